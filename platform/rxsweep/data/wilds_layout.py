"""The metadata.csv layouts: WILDS `rxrx1_v1.0` and the full rxrx.ai release.

    metadata.csv  site_id, well_id, cell_type, dataset, experiment, plate, well, site, well_type,
                  sirna, sirna_id                     one row per site, every site labelled
    WILDS:   images/HEPG2-01/Plate1/B02_s1.png        256x256 RGB of channels 1-3
    rxrx.ai: images/HEPG2-01/Plate1/B02_s1_w1.png     one 8-bit grey PNG per channel (w1..w6)

Both ship the same metadata; they differ only in how a site's image is stored.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rxsweep.data import csvio, rxrx1_facts

#: Where the metadata may sit under the folder the user passes (the archive's own folder names).
METADATA_LOCATIONS = ("metadata.csv", "rxrx1_v1.0/metadata.csv", "rxrx1/metadata.csv")
REQUIRED = ["experiment", "plate", "well", "site", "well_type", "sirna_id", "cell_type", "dataset"]


def find_metadata(root: Path) -> Path | None:
    for relative in METADATA_LOCATIONS:
        if (root / relative).is_file():
            return root / relative
    return None


def read_metadata(path: Path) -> pd.DataFrame:
    """Return one row per site with canonical columns; image paths are added by the caller."""
    frame = csvio.read_csv(path, REQUIRED)
    experiment = csvio.check_experiments(frame, path)
    csvio.check_cell_types(frame, path)
    out = pd.DataFrame({
        "experiment": experiment,
        "plate": csvio.parse_int(frame, "plate", path, minimum=1),
        "well": csvio.check_wells(frame, path),
        "site": csvio.parse_int(frame, "site", path, minimum=1),
        "cell_type": frame["cell_type"],
        "well_type": csvio.check_choice(frame, "well_type", path, rxrx1_facts.WELL_TYPES),
        "label": csvio.parse_int(frame, "sirna_id", path, minimum=0),
        "split_group": frame["dataset"].str.lower(),
        "source_file": path.name,
        "source_row": range(len(frame)),
    })
    out["sirna"] = frame["sirna"] if "sirna" in frame.columns else out["label"].astype(str)
    return out


def stores_channels_separately(data_dir: Path, first: pd.Series) -> bool:
    """True when the images are per-channel PNGs (rxrx.ai) rather than one RGB PNG a site (WILDS)."""
    base = data_dir / "images" / first["experiment"] / f"Plate{first['plate']}" / f"{first['well']}_s{first['site']}"
    return not Path(f"{base}.png").exists() and Path(f"{base}_w1.png").exists()


def wilds_image_paths(experiment: str, plate: int, well: str, site: int) -> list[str]:
    return [f"images/{experiment}/Plate{plate}/{well}_s{site}.png"]


def rxrx1_image_paths(experiment: str, plate: int, well: str, site: int) -> list[str]:
    base = f"images/{experiment}/Plate{plate}/{well}_s{site}"
    return [f"{base}_w{ch}.png" for ch in range(1, rxrx1_facts.N_CHANNELS + 1)]
