"""The CellProfiler LoadData layout: your own Cell Painting plates, as JUMP-CP ships them.

    load_data_csv/<source>/<batch>/<plate>/load_data.csv   one row a site (CellProfiler LoadData):
        FileName_<Ch>, PathName_<Ch> for each channel <Ch>; Metadata_Plate, Metadata_Well,
        Metadata_Site; optionally Metadata_Source (the laboratory) and Metadata_Batch
    platemap.csv                                            one row a (plate, well): Metadata_Plate,
        Metadata_Well, Metadata_JCP2022 (the perturbation), Metadata_pert_type (trt | negcon |
        poscon_*); optionally Metadata_Source
    images (anywhere under the root)                        one grey TIFF a site and channel,
        16-bit (or 8-bit); PathName_ is the folder, relative to the data root (or absolute, inside it)

Other names and places: loaddata_config.py (`loaddata.yaml`). Mapped onto the site table:

    source      Metadata_Source, else loaddata.yaml's `source`
    batch       Metadata_Batch, else the plate (each plate its own batch)
    experiment  '<source>_<batch>': the unit a split holds out and mixing is scored over (RxRx1's
                experiment is its batch)
    plate       the plate's number within its batch (1, 2, ... in barcode order); the barcode is in
                site_id = '<barcode>_<well>_<site>' and well_id = '<barcode>_<well>'
    well_type   trt -> treatment, negcon -> negative_control, poscon* -> positive_control
    label       one id a perturbation: treatments first, then positive, then negative controls,
                each in id order; sirna holds the perturbation id itself
    split_group train (every site is labelled)

Rows that cannot be used are not errors: each becomes a quarantined site with its reason (returned
apart, counted by ingest in quarantine.csv): a well with no platemap entry, a control type none of
the above, a plate whose channels differ from the data's, an image path outside the data root.
Images themselves (missing, truncated, wrong bit depth) are checked by ingest.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.data import csvio
from rxsweep.data.errors import SiteTableError, bad_rows_error
from rxsweep.data.loaddata_config import (
    BRIGHTFIELD, LoadDataConfig, find_load_data, has_config, read_config,
)

NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # source, batch and plate names become file names
CONTROL_TYPES = {"": "treatment", "trt": "treatment", "treatment": "treatment",
                 "negcon": "negative_control", "negative_control": "negative_control",
                 "positive_control": "positive_control"}
_TYPE_ORDER = {"treatment": 0, "positive_control": 1, "negative_control": 2}


def is_loaddata_root(root: Path) -> bool:
    return has_config(root) or (root / "load_data.csv").is_file() or (root / "load_data_csv").is_dir()


def read_loaddata(root: Path) -> tuple[pd.DataFrame, pd.DataFrame, tuple[str, ...]]:
    """(usable rows, quarantined rows with `reason` and `path`, channel names) of a LoadData folder.
    Rows have the site table's columns (sites.py) plus source, batch, source_file, source_row."""
    config = read_config(root)
    files = find_load_data(root, config)
    if not files:
        raise SiteTableError(f"{root}: no LoadData CSV matches {list(config.load_data)}; put load_data.csv "
                             "files there or list their globs under load_data: in loaddata.yaml")
    data = pd.concat([_read_one(path, root, config) for path in files], ignore_index=True).fillna("")
    channels = _channels(data, config)
    rows = _site_rows(data, config)
    rows = _join_platemap(rows, root, config)
    rows["image_paths"], escaped = _image_paths(data, root, channels, config)
    plate_channels = data["_channels"]
    unnamed = _unnamed(data, channels)
    rejected = [
        (~plate_channels.map(lambda have: set(channels) <= set(have)),
         "plate's LoadData has channels " + plate_channels.map(lambda have: str(sorted(have)))
         + f" but the data's are {list(channels)} (choose them with channels: in loaddata.yaml)", ""),
        (unnamed.ne(""), "no file named in FileName_" + unnamed, ""),
        (escaped.ne(""), "image path is outside the data root " + str(root) + " (a PathName_ written on "
         "another machine? rewrite its prefix with path_map: in loaddata.yaml)", escaped),
    ] + rows.attrs.pop("rejected")
    return _split_rejected(rows, rejected) + (channels,)


def _read_one(path: Path, root: Path, config: LoadDataConfig) -> pd.DataFrame:
    """One LoadData CSV, its ids checked (errors name this file and its lines)."""
    col = config.columns
    frame = csvio.read_csv(path, [col["plate"], col["well"], col["site"]])
    have = tuple(c[len("FileName_"):] for c in frame.columns if c.startswith("FileName_"))
    missing = [f"PathName_{c}" for c in have if f"PathName_{c}" not in frame.columns]
    if not have or missing:
        raise SiteTableError(f"{path}: a LoadData CSV needs FileName_<Channel> and PathName_<Channel> "
                             f"columns for each channel; found {list(frame.columns)}")
    plate = _names(frame, col["plate"], path)
    frame["_source"] = _names(frame, col["source"], path) if col["source"] in frame else config.source
    frame["_batch"] = _names(frame, col["batch"], path) if col["batch"] in frame else plate
    frame["_plate"] = plate
    frame["_well"] = _wells(frame, col["well"], path)
    frame["_site"] = csvio.parse_int(frame, col["site"], path, minimum=0)
    frame["_cell_type"] = frame[col["cell_type"]] if col["cell_type"] in frame else config.cell_type
    frame["_channels"] = [have] * len(frame)
    frame["source_file"] = os.path.relpath(path, root)
    frame["source_row"] = np.arange(len(frame))
    return frame


def _wells(frame: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """'A1' and 'a01' -> 'A01' (sites write both), then checked as a plate position."""
    padded = frame[column].str.replace(r"^([A-Za-z])(\d)$", r"\g<1>0\2", regex=True)
    return csvio.check_wells(frame.assign(well=padded), path)


def _channels(data: pd.DataFrame, config: LoadDataConfig) -> tuple[str, ...]:
    """The configured channels, else the non-brightfield channels most sites have."""
    if config.channels:
        return config.channels
    counts = Counter(tuple(sorted(c for c in have if not BRIGHTFIELD.search(c))) for have in data["_channels"])
    return counts.most_common(1)[0][0]


def _site_rows(data: pd.DataFrame, config: LoadDataConfig) -> pd.DataFrame:
    rows = pd.DataFrame({
        "source": data["_source"], "batch": data["_batch"], "experiment": data["_source"] + "_" + data["_batch"],
        "barcode": data["_plate"], "well": data["_well"], "site": data["_site"], "cell_type": data["_cell_type"],
        "source_file": data["source_file"], "source_row": data["source_row"],
    })
    _one_batch_a_plate(rows)
    order = rows.drop_duplicates("barcode").sort_values("barcode")
    rows["plate"] = rows["barcode"].map(dict(zip(order["barcode"], order.groupby("experiment").cumcount() + 1)))
    rows["well_id"] = rows["barcode"] + "_" + rows["well"]
    rows["site_id"] = rows["well_id"] + "_" + rows["site"].astype(str)
    rows["split_group"] = "train"
    return rows


def _names(data: pd.DataFrame, column: str, path: Path) -> pd.Series:
    ok = data[column].str.fullmatch(NAME)
    if not ok.all():
        rows = list(np.flatnonzero(~ok.to_numpy()))
        raise bad_rows_error(path, column, rows, list(data[column].iloc[rows]),
                             "a name of letters, digits, '_', '.' or '-' (it becomes a file name)")
    return data[column]


def _one_batch_a_plate(rows: pd.DataFrame) -> None:
    owners = rows.groupby("barcode")["experiment"].nunique()
    if (owners > 1).any():
        plate = owners.index[owners > 1][0]
        raise SiteTableError(f"plate {plate} is listed under several sources/batches "
                             f"{sorted(rows.loc[rows['barcode'] == plate, 'experiment'].unique())}; "
                             "plate barcodes must be unique across the data")


def _join_platemap(rows: pd.DataFrame, root: Path, config: LoadDataConfig) -> pd.DataFrame:
    col, path = config.columns, (root / config.platemap)
    if not path.is_file():
        raise SiteTableError(f"{root}: no platemap {config.platemap} (one row a plate and well with "
                             f"{col['plate']}, {col['well']}, {col['perturbation']}, {col['control_type']}); "
                             "write it there or name it with platemap: in loaddata.yaml")
    plate_map = csvio.read_csv(path, [col["plate"], col["well"], col["perturbation"], col["control_type"]])
    plate_map["well"] = _wells(plate_map, col["well"], path)
    key = plate_map[col["plate"]] + "_" + plate_map["well"]
    repeated = key.duplicated(keep=False)
    if repeated.any():
        lines = list(np.flatnonzero(repeated.to_numpy()))
        raise bad_rows_error(path, col["well"], lines, list(key.iloc[lines]), "listed once a plate")
    plate_map = plate_map.set_index(key)
    found = rows["well_id"].isin(plate_map.index)
    kind = rows["well_id"].map(plate_map[col["control_type"]].str.lower()).fillna("")
    well_type = kind.map(lambda k: "positive_control" if k.startswith("poscon") else CONTROL_TYPES.get(k))
    rows["well_type"] = well_type.fillna("")
    rows["sirna"] = rows["well_id"].map(plate_map[col["perturbation"]]).fillna("")
    if col["cell_type"] in plate_map.columns:
        rows["cell_type"] = rows["well_id"].map(plate_map[col["cell_type"]]).fillna(rows["cell_type"])
    rows["label"] = _labels(rows[found & well_type.notna() & rows["sirna"].ne("")])
    rows.attrs["rejected"] = [
        (~found, f"well has no entry in {config.platemap}", ""),
        (found & well_type.isna(), f"{col['control_type']} " + kind.map(repr)
         + " is none of trt, negcon, poscon*", ""),
        (found & well_type.notna() & rows["sirna"].eq(""), f"well has no {col['perturbation']} in the platemap", ""),
    ]
    return rows


def _labels(usable: pd.DataFrame) -> pd.Series:
    """One class id a perturbation: treatments, then positive, then negative controls, by id."""
    kind = usable.groupby("sirna")["well_type"].agg(lambda t: min(_TYPE_ORDER[v] for v in t))
    order = sorted(kind.index, key=lambda p: (kind[p], p))
    return usable["sirna"].map({p: i for i, p in enumerate(order)})


def _image_paths(data: pd.DataFrame, root: Path, channels: tuple[str, ...],
                 config: LoadDataConfig) -> tuple[pd.Series, pd.Series]:
    """Absolute image paths a site (one a channel), and its first path outside the root ('' if none).
    A URI (s3://...) is outside: the images must be on a file system, under the root."""
    prefix = str(root) + os.sep
    per_channel = []
    for channel in channels:
        folders = data.get(f"PathName_{channel}", pd.Series("", index=data.index)).map(
            lambda f: _mapped(str(f), config.path_map))
        files = data.get(f"FileName_{channel}", pd.Series("", index=data.index)).astype(str)
        per_channel.append([f + "/" + n if "://" in f else os.path.normpath(os.path.join(root, f, n))
                            for f, n in zip(folders, files)])
    paths = pd.Series([list(site) for site in zip(*per_channel)], index=data.index)
    escaped = paths.map(lambda site: next((p for p in site if not p.startswith(prefix)), ""))
    return paths, escaped


def _unnamed(data: pd.DataFrame, channels: tuple[str, ...]) -> pd.Series:
    """The first channel a row names no file for ('' if none)."""
    named = pd.DataFrame({c: data.get(f"FileName_{c}", pd.Series("", index=data.index)).astype(str).ne("")
                          for c in channels})
    return named.apply(lambda row: next((c for c in channels if not row[c]), ""), axis=1)


def _mapped(folder: str, path_map: dict) -> str:
    for old, new in path_map.items():
        if folder.startswith(old):
            return new + folder[len(old):]
    return folder


def _split_rejected(rows: pd.DataFrame, rejected: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each row goes out with the first reason that applies to it."""
    reason = pd.Series("", index=rows.index)
    path = pd.Series("", index=rows.index)
    for mask, why, where in rejected:
        take = mask & reason.eq("")
        reason[take] = why[take] if isinstance(why, pd.Series) else why
        where = where if isinstance(where, pd.Series) else rows["image_paths"].map(lambda p: p[0])
        path[take] = where[take]
    bad = reason.ne("")
    out = rows[bad].assign(reason=reason[bad], path=path[bad])
    good = rows[~bad].copy()
    good["label"] = good["label"].astype(np.int64)
    return good, out
