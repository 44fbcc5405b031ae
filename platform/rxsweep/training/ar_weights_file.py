"""Precomputed adaptive-resampling weights (``ar_weights_from``), read and checked before training.

The AR paper suggests computing the weights once from a foundation model's embeddings when one is
at hand. The file is a Parquet table with a ``site_id`` column and either

    weight      a non-negative number a site (any scale: the training sites' are renormalised), or
    embedding   a list of numbers a site (all of one length): the weights are computed once from
                the training sites' embeddings (rxsweep.training.resampling, with ar_bins and
                ar_smoothing).

It may list sites of other splits (they are ignored); a site id that is in no shard, a training
site it lacks, or a duplicate is a :class:`ConfigError` naming them, before any worker starts
(rxsweep.training.site_file reads and checks the file; ``--embeddings`` reads its files with it too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.training.config import ConfigError
from rxsweep.training.resampling import resampling_weights
from rxsweep.training.site_file import check_site_ids, read_site_file, vectors


def read_ar_weights(path: str | Path, all_site_ids: pd.Series, train_site_ids: pd.Series, bins: int,
                    smoothing: float) -> np.ndarray:
    """The weight of each training site, in the order of ``train_site_ids``, summing to 1.
    ``all_site_ids``: every site of the shards. The file is read and checked by
    rxsweep.training.site_file (SiteFileError, a ConfigError)."""
    where = f"ar_weights_from {str(path)!r}"
    table, value = read_site_file(path, where, ("weight", "embedding"))
    ids = table["site_id"]
    check_site_ids(where, ids, all_site_ids, train_site_ids, "training sites")
    position = pd.Series(np.arange(len(ids)), index=ids.to_numpy())
    wanted = train_site_ids.astype(str)
    rows = position.loc[wanted.to_numpy()].to_numpy()
    if value == "weight":
        weights = pd.to_numeric(table["weight"], errors="coerce").to_numpy(dtype=np.float64)[rows]
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ConfigError(f"{where}: the training sites' weights must be finite, >= 0 and not all 0")
        return weights / weights.sum()
    matrix = vectors(where, table["embedding"].iloc[rows], wanted)
    try:
        return resampling_weights(matrix, bins=bins, smoothing=smoothing)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
