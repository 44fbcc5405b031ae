"""The on-disk layout of the Cell Painting world, as JUMP's CellProfiler pipelines read it.

    images/<Source>/<Batch>/<Plate>/<Well>_s<Site>_<Channel>.tiff   one 16-bit grey TIFF a channel
    load_data_csv/<Source>/<Batch>/<Plate>/load_data.csv            LoadData: one row a site
    platemap.csv                                                     one row an imaged (plate, well)

PathName_* columns are image folders relative to the data root, so the dataset can be moved.
Rows are sorted and every value written as text of a fixed form, so files are byte-identical for a
seed. TIFFs carry no description, software or time tag: the bytes are the pixels and the shape.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from rxsweep.data.synth.cellpainting.channels import CHANNELS
from rxsweep.data.synth.cellpainting.design import Design, PlatePlan

LOAD_DATA_COLUMNS: tuple[str, ...] = (
    *(f"{kind}_Orig{ch}" for ch in CHANNELS for kind in ("FileName", "PathName")),
    "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well", "Metadata_Site",
)
PLATEMAP_COLUMNS: tuple[str, ...] = (
    "Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_JCP2022", "Metadata_pert_type",
    "Metadata_modality",
)
PLATEMAP_FILE = "platemap.csv"


def image_dir(plate: PlatePlan) -> str:
    """A plate's image folder, relative to the data root (the PathName_* value)."""
    return f"images/{plate.source}/{plate.batch}/{plate.plate}"


def load_data_file(plate: PlatePlan) -> str:
    """A plate's LoadData CSV, relative to the data root."""
    return f"load_data_csv/{plate.source}/{plate.batch}/{plate.plate}/load_data.csv"


def image_name(well: str, site: int, channel: str) -> str:
    return f"{well}_s{site}_{channel}.tiff"


def write_image(path: Path, image: np.ndarray) -> None:
    """One channel of one site: a 2-D uint16 grey TIFF, uncompressed as the microscopes write them."""
    tifffile.imwrite(path, image, photometric="minisblack", metadata=None, software=False)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def write_load_data(root: Path, plate: PlatePlan, sites: int) -> None:
    """The plate's load_data.csv: one row a (well, site), sorted."""
    folder = image_dir(plate)
    rows = []
    for well, _ in plate.wells:
        for site in range(1, sites + 1):
            files = [v for ch in CHANNELS for v in (image_name(well, site, ch), folder)]
            rows.append((*files, plate.source, plate.batch, plate.plate, well, site))
    _write_csv(root / load_data_file(plate), LOAD_DATA_COLUMNS, sorted(rows, key=lambda r: r[-2:]))


def write_platemap(root: Path, design: Design) -> None:
    """platemap.csv: every imaged well of every plate with its JCP2022 id, pert type and modality."""
    rows = []
    for plate in design.plates:
        for well, index in plate.wells:
            p = design.perturbations[index]
            rows.append((plate.source, plate.plate, well, p.jcp, p.pert_type, p.modality))
    _write_csv(root / PLATEMAP_FILE, PLATEMAP_COLUMNS, sorted(rows))
