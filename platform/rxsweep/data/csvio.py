"""Reading and validating the metadata CSVs of the public RxRx1 layouts.

The public files are read as they come: a UTF-8 byte-order mark (Excel), CRLF line endings, spaces
around names and values, lower-case wells. Anything beyond that is an error that names the file,
the line and the column, raised before any image is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.data import rxrx1_facts
from rxsweep.data.errors import SiteTableError, bad_rows_error


def read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """Read a metadata CSV as strings, stripped, and check that the required columns are present."""
    try:
        # dtype=str keeps ids like '01' and 'B02' intact; utf-8-sig swallows an Excel BOM.
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", keep_default_na=False, skipinitialspace=True)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SiteTableError(f"{path}: not a readable CSV ({exc})") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SiteTableError(
            f"{path}: missing required column(s) {missing}; found {list(frame.columns)}"
        )
    if frame.empty:
        raise SiteTableError(f"{path}: has a header but no rows")
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return frame


def parse_int(frame: pd.DataFrame, column: str, path: Path, minimum: int | None = None,
              allow_missing: bool = False) -> np.ndarray:
    """Parse a column of integers; missing values become -1 when allowed, else an error."""
    raw = frame[column]
    missing = raw.eq("")
    numeric = pd.to_numeric(raw.where(~missing), errors="coerce")
    whole = numeric.notna() & (numeric == numeric.round())
    bad = ~whole & ~(missing & allow_missing)
    if minimum is not None:
        bad |= whole & (numeric < minimum)
    if bad.any():
        rows = list(np.flatnonzero(bad.to_numpy()))
        expected = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        raise bad_rows_error(path, column, rows, list(raw.iloc[rows]), expected)
    return numeric.fillna(-1).astype(np.int64).to_numpy()


def check_wells(frame: pd.DataFrame, path: Path) -> pd.Series:
    """Upper-case and validate the well column ('b02' -> 'B02'); wells outside a plate are errors."""
    wells = frame["well"].str.upper()
    ok = wells.str.fullmatch(r"[A-P]\d{2}")
    if not ok.all():
        rows = list(np.flatnonzero(~ok.to_numpy()))
        raise bad_rows_error(path, "well", rows, list(frame["well"].iloc[rows]), "a plate position like 'B02'")
    return wells


def check_experiments(frame: pd.DataFrame, path: Path) -> pd.Series:
    """Experiment names become folder names: only '<CELLTYPE>-<NN>' is accepted, so '..' or '/x' never
    reaches the file system."""
    names = frame["experiment"]
    ok = names.str.fullmatch(r"[A-Za-z0-9]+-\d+")
    if not ok.all():
        rows = list(np.flatnonzero(~ok.to_numpy()))
        raise bad_rows_error(path, "experiment", rows, list(names.iloc[rows]), "named like 'HEPG2-01'")
    return names


def check_choice(frame: pd.DataFrame, column: str, path: Path, allowed: tuple[str, ...]) -> pd.Series:
    values = frame[column].str.lower()
    ok = values.isin(allowed)
    if not ok.all():
        rows = list(np.flatnonzero(~ok.to_numpy()))
        raise bad_rows_error(path, column, rows, list(frame[column].iloc[rows]), f"one of {list(allowed)}")
    return values


def check_cell_types(frame: pd.DataFrame, path: Path) -> None:
    """The cell type column must agree with the experiment name's prefix (HEPG2-01 is HEPG2)."""
    derived = frame["experiment"].map(rxrx1_facts.cell_type_of)
    bad = derived.ne(frame["cell_type"])
    if bad.any():
        rows = list(np.flatnonzero(bad.to_numpy()))
        raise bad_rows_error(
            path, "cell_type", rows, list(frame["cell_type"].iloc[rows]),
            "the experiment name's prefix (HEPG2-01 is HEPG2)",
        )
