"""The site table: one row per imaging site, the same columns whichever public layout it came from.

    site_id      'HEPG2-01_1_B02_1' (experiment_plate_well_site, as WILDS names sites)
    well_id      'HEPG2-01_1_B02'   (both sites of a well share it: the unit for holdouts and CV groups)
    experiment   'HEPG2-01'         the batch
    plate        1..4
    well         'B02'
    site         1 | 2
    cell_type    'HEPG2'
    well_type    treatment | positive_control | negative_control
    sirna        the siRNA's name as the layout gives it ('s21721', 'EMPTY'; Kaggle: the id as text)
    label        int class id: 0..1107 treatments, 1108..1137 positive controls, 1138 untreated;
                 -1 where the layout hides it (Kaggle test.csv)
    split_group  the layout's own split: Kaggle train | test, WILDS train | val | test
    source       the laboratory that imaged it: 'rxrx1' (one source) | LoadData's Metadata_Source
    batch        the batch it was imaged in: RxRx1's experiment | LoadData's Metadata_Batch
    image_paths  absolute paths of the site's images, one per stored image (6 grey, or 1 RGB, or
                 one 16-bit TIFF a channel for LoadData)

The third layout, `loaddata` (CellProfiler LoadData CSVs and a platemap: your own Cell Painting
plates), maps its own names onto these columns: loaddata_layout.py says how.

`table.attrs` carries `layout`, `root`, `n_channels` and `channels` (their names).
`load_sites_and_rejected` also returns the rows the layout could not use, with `reason` and `path`
(LoadData only; ingest quarantines them). Paths are checked to stay inside the data root; images themselves are opened (and bad ones
quarantined) by ingest, not here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from rxsweep.data import kaggle_layout, loaddata_layout, rxrx1_facts, wilds_layout
from rxsweep.data.errors import MAX_ROWS_IN_MESSAGE, SiteTableError

COLUMNS = [
    "site_id", "well_id", "experiment", "plate", "well", "site", "cell_type", "well_type",
    "sirna", "label", "split_group", "source", "batch", "image_paths",
]
#: The source of every RxRx1 site: one laboratory (Recursion) imaged all of it.
RXRX1_SOURCE = "rxrx1"


@dataclass(frozen=True)
class Layout:
    name: str
    n_channels: int
    #: (split_group, experiment, plate, well, site) -> image paths relative to the metadata folder
    image_paths: Callable[[str, str, int, str, int], list[str]]


LAYOUTS: dict[str, Layout] = {
    "kaggle": Layout("kaggle", 6, kaggle_layout.kaggle_image_paths),
    "wilds": Layout("wilds", 3, lambda _split, *key: wilds_layout.wilds_image_paths(*key)),
    "rxrx1": Layout("rxrx1", 6, lambda _split, *key: wilds_layout.rxrx1_image_paths(*key)),
}
LOADDATA = "loaddata"  # channels and paths come from its CSVs, not from a Layout
KNOWN_LAYOUTS = ["auto", *LAYOUTS, LOADDATA]


def load_sites(root: str | os.PathLike, layout: str = "auto") -> pd.DataFrame:
    """Read an RxRx1 folder (Kaggle, WILDS or rxrx.ai layout) or a LoadData folder into the site
    table described above."""
    return load_sites_and_rejected(root, layout)[0]


def load_sites_and_rejected(root: str | os.PathLike, layout: str = "auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The site table, and the rows the layout listed but could not use (site table columns +
    reason + path; empty for the RxRx1 layouts, whose faults are errors or bad images)."""
    if layout not in KNOWN_LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {KNOWN_LAYOUTS}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"data root {root} is not a folder")
    if layout == LOADDATA or (layout == "auto" and loaddata_layout.is_loaddata_root(root)):
        return _loaddata_sites(root)
    layout, data_dir, rows = _read_rows(root, layout)
    spec = LAYOUTS[layout]
    if "site" not in rows.columns:  # Kaggle lists wells: each is imaged at two sites
        rows = rows.loc[rows.index.repeat(2)].reset_index(drop=True)
        rows["site"] = [1, 2] * (len(rows) // 2)
    rows["well_id"] = rows["experiment"] + "_" + rows["plate"].astype(str) + "_" + rows["well"]
    rows["site_id"] = rows["well_id"] + "_" + rows["site"].astype(str)
    _reject_duplicates(rows, data_dir)
    rows["image_paths"] = [
        [str(data_dir / rel) for rel in spec.image_paths(split, exp, plate, well, site)]
        for split, exp, plate, well, site in zip(
            rows["split_group"], rows["experiment"], rows["plate"], rows["well"], rows["site"])
    ]
    rows["source"], rows["batch"] = RXRX1_SOURCE, rows["experiment"]
    channels = rxrx1_facts.CHANNELS[:spec.n_channels]
    return _finish(rows, root, layout, channels, pd.DataFrame(columns=[*COLUMNS, "reason", "path"]))


def _loaddata_sites(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, rejected, channels = loaddata_layout.read_loaddata(root)
    if rows.empty:
        reasons = rejected["reason"].value_counts().head(3).to_dict()
        raise SiteTableError(f"{root}: no usable site in the LoadData CSVs ({len(rejected)} rejected; "
                             f"most common reasons: {reasons})")
    _reject_duplicates(pd.concat([rows, rejected]), root)
    return _finish(rows, root, LOADDATA, channels, rejected)


def _finish(rows: pd.DataFrame, root: Path, layout: str, channels: tuple[str, ...],
            rejected: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    _reject_folders_outside(rows, root)
    table = rows.sort_values(["experiment", "plate", "well", "site"], kind="stable")[COLUMNS]
    table = table.reset_index(drop=True)
    table.attrs.update(layout=layout, root=str(root), n_channels=len(channels), channels=list(channels))
    return table, rejected.sort_values("site_id").reset_index(drop=True)


def _read_rows(root: Path, layout: str) -> tuple[str, Path, pd.DataFrame]:
    metadata = wilds_layout.find_metadata(root)
    kaggle = kaggle_layout.is_kaggle_root(root)
    if layout == "auto":
        if kaggle and metadata:
            raise SiteTableError(
                f"{root} holds both Kaggle CSVs and {metadata.name}; pass layout='kaggle' or 'wilds'"
            )
        if not kaggle and not metadata:
            raise SiteTableError(
                f"{root} is not an RxRx1 or LoadData folder: expected train.csv/test.csv (Kaggle layout), "
                f"one of {list(wilds_layout.METADATA_LOCATIONS)} (WILDS / rxrx.ai layout), or load_data.csv, "
                "load_data_csv/ or loaddata.yaml (CellProfiler LoadData: your own plates)"
            )
        layout = "kaggle" if kaggle else "metadata"
    if layout == "kaggle":
        return "kaggle", root, kaggle_layout.read_kaggle(root)
    if metadata is None:
        raise SiteTableError(f"{root}: none of {list(wilds_layout.METADATA_LOCATIONS)} found")
    rows = wilds_layout.read_metadata(metadata)
    if layout == "metadata":
        separate = wilds_layout.stores_channels_separately(metadata.parent, rows.iloc[0])
        layout = "rxrx1" if separate else "wilds"
    return layout, metadata.parent, rows


def _reject_duplicates(rows: pd.DataFrame, data_dir: Path) -> None:
    dup = rows["site_id"].duplicated(keep=False)
    if not dup.any():
        return
    first = rows.loc[dup].groupby("site_id", sort=False)
    shown = []
    for site_id, group in list(first)[:MAX_ROWS_IN_MESSAGE]:
        where = ", ".join(f"{f} line {r + 2}" for f, r in zip(group["source_file"], group["source_row"]))
        shown.append(f"{site_id} ({where})")
    raise SiteTableError(
        f"{data_dir}: {first.ngroups} duplicate site(s): " + "; ".join(shown)
        + ". Each site may be listed once; remove the repeated rows."
    )


def _reject_folders_outside(rows: pd.DataFrame, root: Path) -> None:
    """Refuse a plate folder that resolves outside the data root (a symlink out of it).

    Names are already restricted to safe characters, so only symlinks can lead out; checking each
    plate folder once costs a few hundred syscalls, not one per image. Single files that are
    symlinks out are caught per image by ingest and quarantined.
    """
    folders = {os.path.dirname(paths[0]) for paths in rows["image_paths"]}
    for folder in sorted(folders):
        real = Path(os.path.realpath(folder))
        if real != root and root not in real.parents:
            raise SiteTableError(
                f"image folder {folder} resolves to {real}, outside the data root {root}; "
                "pass the real location as the data root or copy the images inside it"
            )
