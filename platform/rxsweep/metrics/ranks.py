"""Aggregate ranks and the Pareto front of trials on several objectives, all better when higher.

    rank = mean over objectives of the rank of the value      1 = best, ties averaged

over the rows that have every objective. Ranks, not min-max scaled values: one trial with an extreme
score does not rescale everyone else's. One definition for the sweep's ranking table and for the
choice of each method's configuration to confirm (rxsweep.tuning.confirm).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def aggregate_rank(values: pd.DataFrame) -> pd.Series:
    """Mean rank over the columns of ``values`` (one objective a column, higher is better); NaN for
    a row missing any objective."""
    values = values.apply(pd.to_numeric, errors="coerce")
    complete = values.notna().all(axis=1)
    ranks = values[complete].rank(ascending=False, method="average")
    return ranks.mean(axis=1).reindex(values.index)


def pareto_front(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows no other row dominates (all objectives maximised)."""
    points = np.asarray(points, dtype=float)
    mask = np.ones(len(points), dtype=bool)
    for i, p in enumerate(points):
        dominated = np.all(points >= p, axis=1) & np.any(points > p, axis=1)
        mask[i] = not dominated.any()
    return mask
