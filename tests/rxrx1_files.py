"""Write small RxRx1 folders in the public layouts, with faults on request, for the reader tests.

Independent of rxsweep's synthetic generator on purpose: these tests check the readers against the
published file formats, so the files are written here from the formats, not by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def well_rows(experiments: list[str], plates: int = 2, wells: tuple[str, ...] = ("B02", "B03", "C02")) -> list[dict]:
    rows = []
    for e, experiment in enumerate(experiments):
        for plate in range(1, plates + 1):
            for w, well in enumerate(wells):
                rows.append({"experiment": experiment, "plate": plate, "well": well, "sirna": (e + w) % 3})
    return rows


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_kaggle(root: Path, experiments: list[str], size: int = 16, seed: int = 0,
                 test_experiments: tuple[str, ...] = ()) -> Path:
    """train.csv (+ test.csv for `test_experiments`, without labels) and 6 grey PNGs per site."""
    rng = np.random.default_rng(seed)
    frames = {"train": [], "test": []}
    for split, names in (("train", experiments), ("test", list(test_experiments))):
        for row in well_rows(names):
            row = {"id_code": f"{row['experiment']}_{row['plate']}_{row['well']}", **row}
            frames[split].append(row)
            for site in (1, 2):
                for ch in range(1, 7):
                    write_png(root / split / row["experiment"] / f"Plate{row['plate']}" / f"{row['well']}_s{site}_w{ch}.png",
                              rng.integers(0, 255, (size, size), dtype=np.uint8))
    pd.DataFrame(frames["train"]).to_csv(root / "train.csv", index=False)
    if frames["test"]:
        pd.DataFrame(frames["test"]).drop(columns=["sirna"]).to_csv(root / "test.csv", index=False)
    return root


def write_wilds(root: Path, experiments: list[str], size: int = 16, seed: int = 0) -> Path:
    """rxrx1_v1.0/metadata.csv and one RGB PNG per site, as the WILDS archive unpacks."""
    rng = np.random.default_rng(seed)
    data = root / "rxrx1_v1.0"
    rows = []
    for row in well_rows(experiments):
        for site in (1, 2):
            well_id = f"{row['experiment']}_{row['plate']}_{row['well']}"
            rows.append({
                "site_id": f"{well_id}_{site}", "well_id": well_id,
                "cell_type": row["experiment"].split("-")[0], "dataset": "train",
                "experiment": row["experiment"], "plate": row["plate"], "well": row["well"], "site": site,
                "well_type": "treatment", "sirna": f"s{row['sirna']:05d}", "sirna_id": row["sirna"],
            })
            write_png(data / "images" / row["experiment"] / f"Plate{row['plate']}" / f"{row['well']}_s{site}.png",
                      rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    data.mkdir(parents=True, exist_ok=True)
    (data / "RELEASE_v1.0.txt").write_text("v1.0\n")
    pd.DataFrame(rows).to_csv(data / "metadata.csv", index=False)
    return root
