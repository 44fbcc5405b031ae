"""16-bit grey TIFFs (Cell Painting, as JUMP-CP ships them) -> uint8, by each plate's own controls.

Shards hold uint8 images (image_column.py). A 16-bit camera uses a few thousand of its 65,536
levels, and where depends on the microscope, so a fixed division would leave most sites nearly
black and differ by source. The rule, per plate and channel:

    lo, hi = the LOW and HIGH percentiles of the pixels of up to SAMPLE_SITES negative-control
             sites of the plate (evenly spaced in site_id order; positive controls when a plate
             has no negative controls, every site when it has neither)
    uint8  = round(clip((x - lo) / (hi - lo), 0, 1) * 255)

One affine map a plate keeps what differs between wells of the plate (the biology) and takes out
what differs between plates in gain and offset (the camera), as per-plate normalisation on
controls does in image-based profiling. Pixels above a plate's HIGH percentile saturate: a
perturbation that brightens a channel keeps its higher mean, but not all of its texture. Every
plate's lo and hi are written to the shards' manifest (`intensity_scaling`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TIFF_SUFFIXES = (".tif", ".tiff")
LOW, HIGH = 0.1, 99.9
SAMPLE_SITES = 16
#: Pixels a channel's percentiles are taken over, at most (a regular subsample of each site's grid).
SAMPLE_PIXELS = 2_000_000
RULE = (f"per plate and channel: the {LOW} and {HIGH} percentiles of up to {SAMPLE_SITES} negative-control "
        "sites' pixels (positive controls, else all sites, when a plate has none) map to 0 and 255")


def is_tiff(path: str) -> bool:
    return path.lower().endswith(TIFF_SUFFIXES)


def read_grey(path: str) -> np.ndarray:
    """A TIFF's single grey plane as uint16 or uint8 [H, W]; ValueError says why it is not one."""
    import tifffile

    array = tifffile.imread(path)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):  # [1, H, W] or [H, W, 1]
        array = np.squeeze(array)
    if array.ndim != 2:
        raise ValueError(f"TIFF holds an array of shape {array.shape}, expected one grey plane")
    if array.dtype not in (np.uint16, np.uint8):
        raise ValueError(f"TIFF is {array.dtype}, expected 16- or 8-bit unsigned integers")
    return array


def to_uint8(plane: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scaled = (plane.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / max(hi - lo, 1e-6))
    return np.rint(np.clip(scaled, 0, 255)).astype(np.uint8)


def plate_ranges(sites: pd.DataFrame, n_channels: int) -> dict[str, dict]:
    """'<experiment>/<plate>' -> {"basis", "n_sites", "lo", "hi"} (lists, one value a channel).

    Unreadable images are skipped here (ingest quarantines them); a plate with no readable sample
    gets the full 16-bit range and basis "none"."""
    out = {}
    for (experiment, plate), rows in sites.groupby(["experiment", "plate"], sort=True):
        basis, sample = _sample(rows)
        planes = [[] for _ in range(n_channels)]
        used = 0
        for paths in sample["image_paths"]:
            try:
                site = [read_grey(p) for p in paths]
            except Exception:  # noqa: BLE001 - any unreadable file: ingest quarantines it with the reason
                continue
            used += 1
            for channel, plane in enumerate(site):
                planes[channel].append(plane)
        if not used:
            out[f"{experiment}/{plate}"] = {"basis": "none", "n_sites": 0, "lo": [0.0] * n_channels,
                                            "hi": [65535.0] * n_channels}
            continue
        lo, hi = zip(*(_percentiles(p) for p in planes))
        out[f"{experiment}/{plate}"] = {"basis": basis, "n_sites": used, "lo": list(lo), "hi": list(hi)}
    return out


def _sample(rows: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    for basis, kind in (("negative_control", "negative_control"), ("positive_control", "positive_control")):
        chosen = rows[rows["well_type"] == kind]
        if len(chosen):
            break
    else:
        basis, chosen = "all", rows
    chosen = chosen.sort_values("site_id")
    picks = np.unique(np.linspace(0, len(chosen) - 1, min(SAMPLE_SITES, len(chosen))).round().astype(int))
    return basis, chosen.iloc[picks]


def _percentiles(planes: list[np.ndarray]) -> tuple[float, float]:
    total = sum(p.size for p in planes)
    step = max(1, int(np.ceil(np.sqrt(total / SAMPLE_PIXELS))))
    values = np.concatenate([p[::step, ::step].ravel() for p in planes])
    lo, hi = np.percentile(values, [LOW, HIGH])
    return float(lo), float(max(hi, lo + 1.0))
