"""A Parquet file of one value a site, keyed by ``site_id``: the reader that ``ar_weights_from``
(rxsweep.training.ar_weights_file) and ``rxsweep sweep --embeddings`` (rxsweep.training.embeddings_arm)
share, with the checks both need and errors that name the file and the fix.

    site_id     a string a row, each site once
    embedding   a list (or fixed-size list) of numbers a row, all of one length, finite
    weight      a number a row (ar_weights_from only)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rxsweep.training.config import ConfigError

SHOWN = 5  # site ids named in an error


class SiteFileError(ConfigError):
    """A site file that cannot be used; the message names the file, what is wrong and the fix."""


def read_site_file(path: str | Path, where: str, values: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The file's ``site_id`` (as str) and the first column of ``values`` it has, and that column's
    name. ``where``: how errors name the file (e.g. "ar_weights_from 'w.parquet'")."""
    if not Path(path).is_file():
        raise SiteFileError(f"{where} is not a file")
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise SiteFileError(f"{where} is not a Parquet file: {e}") from None
    value = next((v for v in values if v in names), None)
    if "site_id" not in names or value is None:
        needs = f"site_id and {values[0]}" if len(values) == 1 else f"site_id and one of {', '.join(values)}"
        raise SiteFileError(f"{where} has columns {names}; it needs {needs} (rename or add them)")
    table = pq.read_table(path, columns=["site_id", value]).to_pandas()
    table["site_id"] = table["site_id"].astype(str)
    return table, value


def check_site_ids(where: str, ids: pd.Series, shard_ids: Iterable[str], needed: pd.Series, needed_what: str,
                   missing_fix: str = "") -> None:
    """Refuse (SiteFileError) ids that are in no shard, ids listed twice, and ``needed`` ids the file
    lacks (``needed_what``: what they are, e.g. "training sites"; ``missing_fix``: what to do then)."""
    refuse(where, "lists site ids that are in no shard", sorted(set(ids) - set(pd.Series(list(shard_ids)).astype(str))),
           "remove them (a file of another data set, or sites that ingest quarantined?)")
    refuse(where, "lists site ids more than once", sorted(ids[ids.duplicated()].unique()), "keep one row a site")
    refuse(where, f"has no row for {needed_what}", sorted(set(needed.astype(str)) - set(ids)), missing_fix)


def vectors(where: str, column: pd.Series, ids: pd.Series | None = None) -> np.ndarray:
    """float64 [n, d] of a column of lists (one a row); SiteFileError for a missing value, rows of
    different lengths or a value that is not finite (naming the sites, when ``ids`` are given)."""
    ids = pd.Series(range(len(column))) if ids is None else ids.reset_index(drop=True)
    rows = column.reset_index(drop=True)
    absent = rows.isna() if rows.dtype != object else rows.map(lambda v: v is None)
    refuse(where, "has no vector (null) for sites", list(ids[absent.to_numpy()]), "give every site a vector")
    lengths = rows.map(len)
    if lengths.nunique() > 1:
        common = int(lengths.mode().iloc[0])
        odd = list(ids[(lengths != common).to_numpy()])
        raise SiteFileError(f"{where}: its embedding vectors have different lengths {sorted(int(n) for n in lengths.unique())[:SHOWN]} "
                            f"(most have {common}; {_some(odd)} do not); give every site a vector of one length")
    try:
        matrix = np.asarray(rows.to_list(), dtype=np.float64).reshape(len(rows), -1 if len(rows) else 0)
    except (TypeError, ValueError) as e:
        raise SiteFileError(f"{where}: its embedding column is not a list of numbers a site ({e})") from None
    bad = ~np.isfinite(matrix).all(axis=1)
    refuse(where, "has NaN or infinite values in the vectors of sites", list(ids[bad]),
           "replace them with finite numbers (or drop those dimensions for every site)")
    return matrix


def refuse(where: str, problem: str, ids: list, fix: str = "") -> None:
    """SiteFileError "WHERE PROBLEM: [up to SHOWN ids] and N more (M in all); FIX" when ``ids``."""
    if ids:
        raise SiteFileError(f"{where} {problem}: {_some(ids)}" + (f"; {fix}" if fix else ""))


def _some(ids: list) -> str:
    more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
    return f"{list(ids[:SHOWN])}{more} ({len(ids)} in all)"
