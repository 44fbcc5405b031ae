"""Writers of the two public RxRx1 layouts: image files of a site, and the tables of a dataset.

Kaggle: train.csv, train_controls.csv, test.csv (no sirna), test_controls.csv, pixel_stats.csv,
images train|test/<EXP>/Plate<p>/<well>_s<site>_w<ch>.png (8-bit grey, one a channel).
WILDS rxrx1_v1.0: RELEASE_v1.0.txt, metadata.csv, images/<EXP>/Plate<p>/<well>_s<site>.png (RGB of
channels 1-3). Both also get ROOT.truth.json beside the data root (every generator parameter,
including the per-experiment strength factor of every siRNA, and the hidden Kaggle answers; its
keys are listed in truth.py).
Rows are sorted and floats formatted explicitly so files are byte-identical for a seed.
"""

from __future__ import annotations

import csv
import json
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from rxsweep.data import rxrx1_facts
from rxsweep import fileio
from rxsweep.data.synth.plate_map import Plan, id_code

LAYOUTS = ("kaggle", "wilds")
WILDS_DIR = "rxrx1_v1.0"
RELEASE_FILE = "RELEASE_v1.0.txt"
TRUTH_SUFFIX = ".truth.json"
#: Fixed PNG options: Pillow writes no timestamps, and fixed settings give fixed bytes. On noisy
#: microscopy, Huffman-only deflate (no string matching) is ~25% faster than level 6 and ~12%
#: smaller than level 1, since there are few repeated strings to find.
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_HUFFMAN_ONLY, "optimize": False}

KAGGLE_COLUMNS = ("id_code", "experiment", "plate", "well", "sirna")
CONTROL_COLUMNS = (*KAGGLE_COLUMNS, "well_type")
TEST_COLUMNS = ("id_code", "experiment", "plate", "well")
PIXEL_STATS_COLUMNS = (
    "id_code", "experiment", "plate", "well", "site", "channel", "mean", "std", "median", "min", "max",
)
WILDS_COLUMNS = (
    "site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well", "site",
    "well_type", "sirna", "sirna_id",
)


def truth_file(root: Path) -> Path:
    """Where a dataset's truth.json goes: beside its data root, never in it (it holds the hidden
    Kaggle test answers, and an ingest reads everything under the root)."""
    return root.parent / f"{root.name}{TRUTH_SUFFIX}"


def dataset_root(out: Path, layout: str) -> Path:
    """Where the readers should look: OUT itself for Kaggle, OUT/rxrx1_v1.0 for WILDS."""
    return out / WILDS_DIR if layout == "wilds" else out


def plate_image_dir(layout: str, kaggle_split: str, experiment: str, plate: int) -> str:
    """Relative folder of a plate's images inside the dataset root."""
    top = kaggle_split if layout == "kaggle" else "images"
    return f"{top}/{experiment}/Plate{plate}"


def write_site_images(folder: Path, layout: str, well: str, site: int, image: np.ndarray) -> None:
    """Write one site (uint8 [6, H, W]) in the layout's file scheme. Pillow infers the mode from
    the array (2-D uint8 -> L, [H, W, 3] uint8 -> RGB)."""
    if layout == "kaggle":
        for ch in range(image.shape[0]):
            Image.fromarray(image[ch]).save(folder / f"{well}_s{site}_w{ch + 1}.png", **PNG_OPTIONS)
    else:
        rgb = np.ascontiguousarray(np.moveaxis(image[:3], 0, -1))
        Image.fromarray(rgb).save(folder / f"{well}_s{site}.png", **PNG_OPTIONS)


def pixel_stats_rows(code: str, experiment: str, plate: int, well: str, site: int,
                     image: np.ndarray) -> list[tuple]:
    """pixel_stats.csv rows of one site, from the uint8 image exactly as written.

    Computed from each channel's 256-bin histogram: exact for uint8, and ~10x cheaper than
    np.median's partition of a 512² image.
    """
    values = np.arange(256, dtype=np.float64)
    rows = []
    for ch in range(image.shape[0]):
        hist = np.bincount(image[ch].ravel(), minlength=256)
        n = int(hist.sum())
        mean = float(hist @ values) / n
        std = float(np.sqrt(max(float(hist @ (values - mean) ** 2) / n, 0.0)))
        cdf = np.cumsum(hist)
        lo, hi = np.searchsorted(cdf, [(n - 1) // 2 + 1, n // 2 + 1])  # the middle order statistics
        nonzero = np.flatnonzero(hist)
        rows.append((code, experiment, plate, well, site, ch + 1, f"{mean:.6f}", f"{std:.6f}",
                     f"{(lo + hi) / 2:g}", int(nonzero[0]), int(nonzero[-1])))
    return rows


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _well_rows(plan: Plan):
    """(experiment plan, plate number, well, sirna) for every well, in sorted order."""
    for exp in plan.experiments:
        for plate in exp.plates:
            for well, sirna_id in plate.wells:
                yield exp, plate.plate, well, plan.sirnas[sirna_id]


def write_kaggle_tables(root: Path, plan: Plan, stats_rows: list[tuple]) -> dict[str, int]:
    """The four Kaggle label tables and pixel_stats.csv. Returns the hidden test answers."""
    tables: dict[tuple[str, bool], list[tuple]] = {(s, c): [] for s in ("train", "test") for c in (0, 1)}
    answers: dict[str, int] = {}
    for exp, plate, well, sirna in _well_rows(plan):
        code = id_code(exp.name, plate, well)
        control = sirna.well_type != "treatment"
        row = (code, exp.name, plate, well, sirna.sirna_id)
        if control:
            row = (*row, sirna.well_type)
        elif exp.kaggle_split == "test":
            answers[code] = sirna.sirna_id
            row = row[:4]  # the competition hid the label
        tables[(exp.kaggle_split, control)].append(row)
    _write_csv(root / "train.csv", KAGGLE_COLUMNS, sorted(tables[("train", 0)]))
    _write_csv(root / "train_controls.csv", CONTROL_COLUMNS, sorted(tables[("train", 1)]))
    _write_csv(root / "test.csv", TEST_COLUMNS, sorted(tables[("test", 0)]))
    _write_csv(root / "test_controls.csv", CONTROL_COLUMNS, sorted(tables[("test", 1)]))
    _write_csv(root / "pixel_stats.csv", PIXEL_STATS_COLUMNS, sorted(stats_rows))
    return dict(sorted(answers.items()))


def write_wilds_tables(root: Path, plan: Plan) -> None:
    """metadata.csv (one row a site) and the RELEASE file the wilds package looks for."""
    rows = []
    for exp, plate, well, sirna in _well_rows(plan):
        code = id_code(exp.name, plate, well)
        for site in range(1, rxrx1_facts.SITES_PER_WELL + 1):
            rows.append((f"{code}_{site}", code, exp.cell_type, exp.wilds_split, exp.name, plate,
                         well, site, sirna.well_type, sirna.name, sirna.sirna_id))
    _write_csv(root / "metadata.csv", WILDS_COLUMNS, sorted(rows))
    (root / RELEASE_FILE).write_text("Synthetic RxRx1-WILDS v1.0 layout, written by rxsweep synth.\n")


def write_json(path: Path, payload: dict) -> None:
    """Stable JSON: sorted keys, fixed indentation, trailing newline; written atomically (truth.json
    is the completion marker)."""
    fileio.write_text(path, json.dumps(payload, indent=1, sort_keys=True) + "\n")
