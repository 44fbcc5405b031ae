"""Precomputed adaptive-resampling weights (``ar_weights_from``), read and checked before training.

The AR paper suggests computing the weights once from a foundation model's embeddings when one is
at hand. The file is a Parquet table with a ``site_id`` column and either

    weight      a non-negative number a site (any scale: the training sites' are renormalised), or
    embedding   a list of numbers a site (all of one length): the weights are computed once from
                the training sites' embeddings (rxsweep.training.resampling, with ar_bins and
                ar_smoothing).

It may list sites of other splits (they are ignored); a site id that is in no shard, a training
site it lacks, or a duplicate is a :class:`ConfigError` naming them, before any worker starts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from rxsweep.training.config import ConfigError
from rxsweep.training.resampling import resampling_weights

_SHOWN = 5  # site ids named in an error


def read_ar_weights(path: str | Path, all_site_ids: pd.Series, train_site_ids: pd.Series, bins: int,
                    smoothing: float) -> np.ndarray:
    """The weight of each training site, in the order of ``train_site_ids``, summing to 1.
    ``all_site_ids``: every site of the shards."""
    where = f"ar_weights_from {str(path)!r}"
    if not Path(path).is_file():
        raise ConfigError(f"{where} is not a file")
    try:
        names = pq.read_schema(path).names
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise ConfigError(f"{where} is not a Parquet file: {e}") from None
    value = "weight" if "weight" in names else "embedding" if "embedding" in names else None
    if "site_id" not in names or value is None:
        raise ConfigError(f"{where} has columns {names}; it needs site_id and one of weight, embedding")
    table = pq.read_table(path, columns=["site_id", value]).to_pandas()
    ids = table["site_id"].astype(str)
    _refuse(where, "lists site ids that are in no shard", sorted(set(ids) - set(all_site_ids.astype(str))))
    _refuse(where, "lists site ids more than once", sorted(ids[ids.duplicated()].unique()))
    position = pd.Series(np.arange(len(ids)), index=ids.to_numpy())
    wanted = train_site_ids.astype(str)
    _refuse(where, "has no row for training sites", sorted(set(wanted) - set(ids)))
    rows = position.loc[wanted.to_numpy()].to_numpy()
    if value == "weight":
        weights = pd.to_numeric(table["weight"], errors="coerce").to_numpy(dtype=np.float64)[rows]
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError(f"{where}: the training sites' weights must be finite, >= 0 and not all 0")
        return weights / weights.sum()
    vectors = table["embedding"].iloc[rows].tolist()
    lengths = {len(v) for v in vectors}
    if len(lengths) != 1:
        raise ConfigError(f"{where}: embeddings of different lengths {sorted(lengths)[:_SHOWN]}")
    try:
        return resampling_weights(np.asarray(vectors, dtype=np.float64), bins=bins, smoothing=smoothing)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def _refuse(where: str, problem: str, ids: list) -> None:
    if ids:
        more = f" and {len(ids) - _SHOWN} more" if len(ids) > _SHOWN else ""
        raise ConfigError(f"{where} {problem}: {ids[:_SHOWN]}{more} ({len(ids)} in all)")
