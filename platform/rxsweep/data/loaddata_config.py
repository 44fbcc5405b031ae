"""How rxsweep reads a CellProfiler LoadData folder: every default in one place, and `loaddata.yaml`.

A LoadData folder needs no configuration when it follows JUMP-CP's conventions (the defaults
below). Another site's names go in an optional ``loaddata.yaml`` at the data root, every key
optional:

    load_data: [load_data.csv, load_data_csv/**/load_data.csv]   # globs, relative to the root
    platemap: platemap.csv            # one row a (plate, well): perturbation and control type
    columns:                          # rxsweep's name: your column (in load_data.csv or platemap)
      source: Metadata_Source         # the laboratory; optional (default: `source:` below)
      batch: Metadata_Batch           # optional (default: each plate is its own batch)
      plate: Metadata_Plate
      well: Metadata_Well
      site: Metadata_Site
      perturbation: Metadata_JCP2022  # platemap
      control_type: Metadata_pert_type  # platemap: trt | negcon | poscon*
      cell_type: Metadata_CellType    # optional, either file (default: `cell_type:` below)
    channels: [OrigDNA, OrigER, OrigRNA, OrigAGP, OrigMito]   # FileName_<name>; default: every
                                      # channel but brightfield planes, in alphabetical order
    path_map: {"s3://cellpainting-gallery/cpg0016-jump/": ""}  # PathName_ prefixes to rewrite,
                                      # e.g. where a CSV names another machine's folders
    source: lab                       # the source of rows without a source column
    cell_type: cells                  # the cell type of rows without a cell-type column

The file is read with rxsweep.yamlio (safe, duplicate keys refused); an unknown key is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from rxsweep import yamlio
from rxsweep.data.errors import SiteTableError

CONFIG_FILE = "loaddata.yaml"
DEFAULT_LOAD_DATA = ("load_data.csv", "load_data_csv/**/load_data.csv")
DEFAULT_COLUMNS = {
    "source": "Metadata_Source", "batch": "Metadata_Batch", "plate": "Metadata_Plate",
    "well": "Metadata_Well", "site": "Metadata_Site", "perturbation": "Metadata_JCP2022",
    "control_type": "Metadata_pert_type", "cell_type": "Metadata_CellType",
}
#: Channels left out unless `channels:` names them: brightfield planes (JUMP's OrigBrightfield,
#: OrigHighZBF, OrigLowZBF) are not fluorescence stains, and only some sources image them.
BRIGHTFIELD = re.compile(r"brightfield|zbf$", re.IGNORECASE)


@dataclass(frozen=True)
class LoadDataConfig:
    load_data: tuple[str, ...] = DEFAULT_LOAD_DATA
    platemap: str = "platemap.csv"
    columns: dict = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    channels: tuple[str, ...] = ()  # empty: every non-brightfield channel, alphabetically
    path_map: dict = field(default_factory=dict)
    source: str = "lab"
    cell_type: str = "cells"


def has_config(root: Path) -> bool:
    return (root / CONFIG_FILE).is_file()


def read_config(root: Path) -> LoadDataConfig:
    """The defaults, updated by ROOT/loaddata.yaml when it exists."""
    path = root / CONFIG_FILE
    if not path.is_file():
        return LoadDataConfig()
    try:
        raw = yamlio.safe_load(path.read_text(encoding="utf-8")) or {}
    except yamlio.YAMLError as exc:
        raise SiteTableError(f"{path}: not valid YAML ({exc})") from exc
    known = {f.name for f in fields(LoadDataConfig)}
    if not isinstance(raw, dict) or set(raw) - known:
        unknown = sorted(set(raw) - known) if isinstance(raw, dict) else raw
        raise SiteTableError(f"{path}: unknown key(s) {unknown}; known: {sorted(known)}")
    values = dict(raw)
    if "columns" in values:
        columns = values["columns"]
        if not isinstance(columns, dict) or set(columns) - set(DEFAULT_COLUMNS):
            bad = sorted(set(columns) - set(DEFAULT_COLUMNS)) if isinstance(columns, dict) else columns
            raise SiteTableError(f"{path}: columns: unknown name(s) {bad}; known: {sorted(DEFAULT_COLUMNS)}")
        values["columns"] = {**DEFAULT_COLUMNS, **{k: str(v) for k, v in columns.items()}}
    for key in ("load_data", "channels"):
        if key in values:
            value = values[key]
            values[key] = (value,) if isinstance(value, str) else tuple(str(v) for v in value or ())
    if "path_map" in values and not isinstance(values["path_map"], dict):
        raise SiteTableError(f"{path}: path_map must map a PathName_ prefix to its folder under the root")
    values["path_map"] = {str(k): str(v or "") for k, v in (values.get("path_map") or {}).items()}
    return LoadDataConfig(**values)


def find_load_data(root: Path, config: LoadDataConfig) -> list[Path]:
    """Every LoadData CSV the config's globs match under ROOT, sorted, each once."""
    found = {p.resolve() for pattern in config.load_data for p in root.glob(pattern) if p.is_file()}
    return sorted(found)
