"""Bootstrap intervals for the verdict: selection on validation experiments, judgement on test ones.

Resampling unit: the well, within each experiment. A resample draws, for every experiment e (in
sorted order) with n_e wells, n_e of its wells with replacement:

    positions_e = rows_e[rng.integers(0, n_e, size=n_e)]        rows_e: e's row positions, in order
    resample    = concatenation of positions_e over experiments  (every experiment keeps its size)

The experiments themselves are kept, not resampled: a held-out test set has one to three
experiments a cell type, too few to resample, and the mixing scores need every experiment present.
The interval therefore says how sure we are *on these experiments* (well-to-well noise); the
spread between training seeds is reported apart (several seeds a method).

    bootstrap_interval   statistic(full frame) and the percentile interval of statistic over
                         n_boot resamples: lo, hi = quantiles (1 - level) / 2 and (1 + level) / 2
                         (numpy's default linear interpolation)
    paired_difference    the same for statistic_a - statistic_b, both evaluated on the *same*
                         resamples (both methods are scored on the same test wells), so the
                         wells' shared noise cancels
    verdict_word         "better" / "worse" when the interval of a difference excludes 0, else
                         "no detectable difference"; never a fixed threshold on the difference

Two modes (``distinct``):
- with replacement (``distinct=False``): the ordinary bootstrap. For statistics that are means
  over wells or queries: accuracy, replicate-retrieval mAP (a duplicated well is never its copy's
  candidate: candidates come from other experiments).
- distinct (``distinct=True``): the statistic receives only the distinct wells of each resample,
  in their original order (a subsampling bootstrap; about 1 - 1/e = 63 % of each experiment).
  For the kNN-based mixing scores, which cannot take duplicated rows: a duplicate is its own
  nearest neighbour at distance 0, always from the same batch, and would read as a batch effect.
  A statistic of 63 % of the wells varies more than the same statistic of all of them, so this
  interval is wider than the true one: conservative (a "better" found with it stands).
Resamples whose statistic is NaN (e.g. a subsample too small to score) are dropped and counted:
``n_valid`` is the number of resamples the interval rests on.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["VERDICT_WORDS", "bootstrap_interval", "paired_difference", "resample_wells", "verdict_word"]

VERDICT_WORDS = ("better", "worse", "no detectable difference")

Statistic = Callable[[pd.DataFrame], float]


def _check_wells(wells: object) -> pd.DataFrame:
    if not isinstance(wells, pd.DataFrame):
        raise ValueError(f"wells must be a pandas DataFrame; got {type(wells).__name__}")
    if "experiment" not in wells.columns:
        raise ValueError("wells lacks the column 'experiment' (resampling is within experiments)")
    if wells.empty:
        raise ValueError("wells is empty; nothing to resample")
    if wells["experiment"].isna().any():
        raise ValueError("wells.experiment contains missing values")
    return wells


def resample_wells(wells: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """Row positions (int64) of one resample: wells with replacement within each experiment (module doc)."""
    wells = _check_wells(wells)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    codes, _ = pd.factorize(wells["experiment"], sort=True)
    order = np.argsort(codes, kind="stable")  # each experiment's rows, in row order
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    parts = [rows[rng.integers(0, len(rows), size=len(rows))] for rows in np.split(order, starts[1:])]
    return np.concatenate(parts).astype(np.int64)


def _check_args(n_boot: object, level: object, seed: object) -> None:
    if isinstance(n_boot, bool) or not isinstance(n_boot, numbers.Integral) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}")
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a number in (0, 1); got {level!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")


def _bootstrap(wells: pd.DataFrame, statistics: tuple[Statistic, ...], n_boot: int, level: float,
               seed: int, distinct: bool) -> dict:
    """mean, lo, hi, n_valid of statistics[0] (or of statistics[0] - statistics[1])."""
    wells = _check_wells(wells)
    _check_args(n_boot, level, seed)
    names = ("statistic",) if len(statistics) == 1 else ("statistic_a", "statistic_b")
    for name, fn in zip(names, statistics):
        if not callable(fn):
            raise ValueError(f"{name} must be callable; got {fn!r}")

    def value(frame: pd.DataFrame) -> float:
        values = [float(fn(frame)) for fn in statistics]
        return values[0] - values[1] if len(values) == 2 else values[0]

    rng = np.random.default_rng(int(seed))
    draws = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        positions = resample_wells(wells, rng)
        if distinct:
            positions = np.unique(positions)
        draws[b] = value(wells.iloc[positions].reset_index(drop=True))
    valid = draws[~np.isnan(draws)]
    q = [(1.0 - float(level)) / 2, (1.0 + float(level)) / 2]
    lo, hi = np.quantile(valid, q) if valid.size else (math.nan, math.nan)
    return {"mean": value(wells.reset_index(drop=True)), "lo": float(lo), "hi": float(hi),
            "n_valid": int(valid.size)}


def bootstrap_interval(wells: pd.DataFrame, statistic: Statistic, n_boot: int = 1000, level: float = 0.95,
                       seed: int = 0, distinct: bool = False) -> dict:
    """Percentile bootstrap interval of ``statistic(rows) -> float`` over well resamples (module doc).

    Returns {"mean": statistic on the full frame, "lo", "hi": the interval, "n_valid": resamples
    with a non-NaN statistic}. Cost: n_boot + 1 calls of statistic.
    """
    return _bootstrap(wells, (statistic,), n_boot, level, seed, distinct)


def paired_difference(wells: pd.DataFrame, statistic_a: Statistic, statistic_b: Statistic, n_boot: int = 1000,
                      level: float = 0.95, seed: int = 0, distinct: bool = False) -> dict:
    """Interval of statistic_a - statistic_b, both on the same resamples (module doc).

    Returns {"mean": a - b on the full frame, "lo", "hi", "n_valid"}; read it with verdict_word.
    """
    return _bootstrap(wells, (statistic_a, statistic_b), n_boot, level, seed, distinct)


def verdict_word(lo: float, hi: float, higher_is_better: bool = True) -> str:
    """"better" if the interval [lo, hi] of a - b lies above 0 (below 0 when lower is better),
    "worse" if on the other side, else "no detectable difference" (an interval touching 0 included)."""
    for name, x in (("lo", lo), ("hi", hi)):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(float(x)):
            raise ValueError(f"{name} must be a number, not NaN; got {x!r}")
    if lo > hi:
        raise ValueError(f"lo must not exceed hi; got lo={lo!r}, hi={hi!r}")
    if not isinstance(higher_is_better, (bool, np.bool_)):
        raise ValueError(f"higher_is_better must be a bool; got {higher_is_better!r}")
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "no detectable difference"
