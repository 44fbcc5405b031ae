"""The Kaggle layout (Recursion Cellular Image Classification, 2019).

    train.csv          id_code, experiment, plate, well, sirna          treatment wells
    train_controls.csv id_code, experiment, plate, well, sirna, well_type
    test.csv           id_code, experiment, plate, well                 no labels (hidden in the competition)
    test_controls.csv  id_code, experiment, plate, well, sirna, well_type
    train/HEPG2-01/Plate1/B02_s1_w1.png ... one 8-bit grey PNG per site and channel (w1..w6)

The CSVs list wells, not sites: each well becomes sites 1 and 2.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from rxsweep.data import csvio, rxrx1_facts

SPLITS = ("train", "test")
_CONTROL_TYPES = ("positive_control", "negative_control")


def is_kaggle_root(root: Path) -> bool:
    return any((root / f"{split}.csv").is_file() for split in SPLITS)


def read_kaggle(root: Path) -> pd.DataFrame:
    """Return one row per *well* with canonical columns (site expansion happens in sites.py)."""
    parts = []
    for split in SPLITS:
        for suffix, required, well_types in (
            ("", ["experiment", "plate", "well"], None),
            ("_controls", ["experiment", "plate", "well", "sirna", "well_type"], _CONTROL_TYPES),
        ):
            path = root / f"{split}{suffix}.csv"
            if not path.is_file():
                continue
            if split == "train" and not suffix:
                required = required + ["sirna"]
            parts.append(_read_one(path, split, required, well_types))
    if not parts:
        raise FileNotFoundError(f"{root}: no train.csv or test.csv: not a Kaggle-layout RxRx1 folder")
    return pd.concat(parts, ignore_index=True)


def _read_one(path: Path, split: str, required: list[str], well_types: tuple[str, ...] | None) -> pd.DataFrame:
    frame = csvio.read_csv(path, required)
    experiment = csvio.check_experiments(frame, path)
    wells = csvio.check_wells(frame, path)
    plates = csvio.parse_int(frame, "plate", path, minimum=1)
    has_label = "sirna" in frame.columns
    labels = csvio.parse_int(frame, "sirna", path, minimum=0, allow_missing=True) if has_label else -1
    well_type = csvio.check_choice(frame, "well_type", path, well_types) if well_types else "treatment"
    out = pd.DataFrame({
        "experiment": experiment,
        "plate": plates,
        "well": wells,
        "cell_type": experiment.map(rxrx1_facts.cell_type_of),
        "well_type": well_type,
        "label": labels,
        "split_group": split,
        "source_file": path.name,
        "source_row": range(len(frame)),
    })
    # Kaggle ids are integers; keep them as the siRNA name too so both layouts share one column.
    out["sirna"] = out["label"].map(lambda v: str(v) if v >= 0 else "")
    return out


def kaggle_image_paths(split: str, experiment: str, plate: int, well: str, site: int) -> list[str]:
    """Relative paths of the 6 channel PNGs of one site."""
    base = f"{split}/{experiment}/Plate{plate}/{well}_s{site}"
    return [f"{base}_w{ch}.png" for ch in range(1, rxrx1_facts.N_CHANNELS + 1)]
