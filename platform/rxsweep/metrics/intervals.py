"""The verdict's uncertainty: a bootstrap over seeds, experiments and perturbations, and Holm's words.

The verdict claims that a method does better or worse than ERM on *new experiments*, trained
with *another seed*. Its intervals therefore resample three levels, each carrying one variance:

    level          what is resampled                                 variance it carries
    seeds          an arm's confirmation runs, with replacement      training-seed spread (init,
                   (independently per arm; arms that are the same    batch order, augmentation)
                   runs, ERM and ERM + a post-hoc correction, share
                   one draw)
    experiments    a cell type's test experiments, with replacement, experiment-to-experiment
                   where it has MIN_EXPERIMENTS_TO_RESAMPLE (3) or   (plates, days, reagents)
                   more; held fixed below that (two experiments
                   cannot give their spread, and mixing needs both)
    perturbations  a cell type's siRNAs (labels), with replacement,  which perturbations (and
                   each with all its wells in the drawn experiments  wells) the test set holds

    Held fixed: the cell types (a claim is about these, not new ones), the test experiments of a
    cell type with fewer than 3 of them (the default study holds out 2: its intervals carry seeds
    and perturbations only), and the choice of configuration (made on validation).

Why perturbations, not wells: a treatment siRNA has one well in each experiment, and those wells
are what replicate mAP retrieves and what mixing needs to fall together. Wells resampled
independently per experiment break the pairs: a query loses its replicate and the scores fall
for that reason alone (on tests/test_intervals.py's generator, mAP's interval came out 1.56x the
true width with wells resampled within experiments, 1.95x with their distinct wells rescaled by
the finite-population factor; 1.12x with siRNAs resampled). The siRNA with its wells in every drawn experiment is one unit (a cluster
bootstrap; with experiments also drawn, Owen's pigeonhole bootstrap of a crossed design).

Duplicates. A resample holds repeated wells. Accuracy counts them. Replicate mAP takes them as
they come (a copy is never its own candidate: candidates are in other experiments; a drawn-twice
replicate counts twice). The kNN mixing scores must not see a well's copy as its neighbour (at
distance 0, from the same batch: read as a batch effect), so a resample's copies carry the
original well's id and are excluded from each other's neighbourhoods (rxsweep.metrics.mixing).

Centring. A statistic of a resample with duplicated perturbations differs systematically from the
statistic of the data (a duplicated replicate pair is retrieved twice): every metric's resampled
values are shifted so that their median falls on the full-data value (:func:`centred`); the
interval is their percentile interval.

A resample b draws the unit positions once (:func:`resample_units`) and every arm is scored on
the same wells (paired: the shared noise cancels in a difference). Per arm with seeds s = 1..n
and per-seed values theta_s (all wells), the resampled value is additive over levels:

    boot[b] = mean_s centred_s[b]  +  sqrt(n / (n - 1)) * (mean_{s* in seed draw b} theta_s* - mean_s theta_s)

The factor sqrt(n / (n - 1)) undoes the bootstrap's (n - 1) / n shrinkage of a mean's variance,
which with 2 seeds would halve the seed variance (:func:`seed_term`). An arm with one run (the
features baseline) carries no seed variance: it is deterministic given its data.

tests/test_intervals.py draws hundreds of independent test sets from one generator (fixed
experiment shifts, fresh perturbation effects and well noise) and checks the width against the
true spread and the coverage, for mixing and mAP.

Words: for each arm x metric against ERM, d[b] = boot[b, arm] - boot[b, ERM]; estimate = the
difference of the full-data values; se = the standard deviation of d over resamples;
p = 2 Phi(-|estimate| / se) (a normal test with bootstrap standard error, so that p-values
below 1 / n_boot exist for the correction). Holm's step-down (:func:`holm`) adjusts the p of
every word one verdict prints, so the chance that *any* word says "better" or "worse" where
there is no difference is at most ALPHA (family-wise). A word is "better" / "worse" when its
Holm-adjusted p < ALPHA, by the sign of the estimate, else "no detectable difference".
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd
from scipy.stats import norm

__all__ = ["ALPHA", "MIN_EXPERIMENTS_TO_RESAMPLE", "UNIT_COLUMNS", "VERDICT_WORDS", "UnitResampler", "centred", "holm",
           "normal_p_value", "percentile_interval", "resample_units", "seed_term", "verdict_word"]

VERDICT_WORDS = ("better", "worse", "no detectable difference")
#: Family-wise error rate of one verdict's words.
ALPHA = 0.05
#: A cell type's test experiments are resampled from this many on (fewer are held fixed).
MIN_EXPERIMENTS_TO_RESAMPLE = 3
#: The columns a resample reads of each well.
UNIT_COLUMNS = ("experiment", "cell_type", "label")


def _check_units(units: object) -> pd.DataFrame:
    if not isinstance(units, pd.DataFrame):
        raise ValueError(f"units must be a pandas DataFrame; got {type(units).__name__}")
    missing = [c for c in UNIT_COLUMNS if c not in units.columns]
    if missing:
        raise ValueError(f"units lacks the columns {missing} (perturbations and experiments are resampled "
                         "within cell type)")
    if units.empty:
        raise ValueError("units is empty; nothing to resample")
    if units[list(UNIT_COLUMNS)].isna().any().any():
        raise ValueError(f"units.{'/'.join(UNIT_COLUMNS)} contain missing values")
    return units


class UnitResampler:
    """Draws resamples of ``units`` (one row a well: its experiment, cell type and label):
    per cell type (sorted), its experiments with replacement when it has ``min_experiments`` or
    more (else each once), its labels with replacement, and every well of each drawn
    (experiment, label) pair (module doc). ``draw(rng)`` returns the row positions (int64)."""

    def __init__(self, units: pd.DataFrame, min_experiments: int = MIN_EXPERIMENTS_TO_RESAMPLE) -> None:
        units = _check_units(units).reset_index(drop=True)
        self.plan = []  # per cell type: experiments, labels, rows of each (experiment, label)
        for _, group in units.groupby("cell_type", sort=True):
            experiments = sorted(group["experiment"].unique())
            labels = sorted(group["label"].unique())
            cells = {key: rows.to_numpy() for key, rows in group.groupby(["experiment", "label"]).groups.items()}
            self.plan.append((experiments, labels, cells, len(experiments) >= min_experiments))

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
        parts = []
        empty = np.zeros(0, np.int64)
        for experiments, labels, cells, resample_experiments in self.plan:
            if resample_experiments:
                experiments = [experiments[i] for i in rng.integers(0, len(experiments), size=len(experiments))]
            drawn = [labels[i] for i in rng.integers(0, len(labels), size=len(labels))]
            parts += [cells.get((e, label), empty) for e in experiments for label in drawn]
        return np.concatenate(parts).astype(np.int64)


def resample_units(units: pd.DataFrame, rng: np.random.Generator,
                   min_experiments: int = MIN_EXPERIMENTS_TO_RESAMPLE) -> np.ndarray:
    """One resample's row positions (:class:`UnitResampler`; build one to draw many)."""
    return UnitResampler(units, min_experiments).draw(rng)


def centred(raw: np.ndarray, theta: np.ndarray | float) -> np.ndarray:
    """``theta + raw - median(raw)`` over resamples (axis 0; NaN: not scored, ignored by the
    median; module doc). ``raw`` [B, ...], ``theta`` the full-data value (broadcast over B)."""
    raw = np.asarray(raw, dtype=np.float64)
    centre = np.full(raw.shape[1:], np.nan)
    any_scored = (~np.isnan(raw)).any(axis=0)
    if any_scored.any():
        centre[any_scored] = np.nanmedian(raw[:, any_scored], axis=0)
    return np.asarray(theta, dtype=np.float64) + raw - centre


def seed_term(values: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """The seed level's deviation per resample: sqrt(n / (n - 1)) * (mean of the drawn seeds'
    values - mean of all), ``values`` (n,) per-seed values on all wells, ``draws`` (B, n) seed
    indices drawn with replacement. Zeros when n == 1 (no seed variance to estimate)."""
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if n < 2:
        return np.zeros(len(draws))
    finite = np.where(np.isnan(values), np.nanmean(values), values)
    return math.sqrt(n / (n - 1)) * (finite[draws].mean(axis=1) - finite.mean())


def normal_p_value(estimate: float, se: float) -> float:
    """Two-sided p of ``estimate`` against 0 with standard error ``se``: 2 Phi(-|estimate| / se);
    with se == 0, 0 for a non-zero estimate and 1 for zero; NaN when either is NaN."""
    if math.isnan(estimate) or math.isnan(se):
        return math.nan
    if se <= 0:
        return 1.0 if estimate == 0 else 0.0
    return float(2 * norm.sf(abs(estimate) / se))


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count towards m):
    sorted p_(1) <= ... <= p_(m): adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = order.size
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def verdict_word(estimate: float, p_adjusted: float, alpha: float = ALPHA, higher_is_better: bool = True) -> str:
    """"better" / "worse" (by the sign of ``estimate``, arm - reference) when ``p_adjusted`` <
    ``alpha``, else "no detectable difference"."""
    for name, x in (("estimate", estimate), ("p_adjusted", p_adjusted)):
        if isinstance(x, bool) or not isinstance(x, numbers.Real) or math.isnan(float(x)):
            raise ValueError(f"{name} must be a number, not NaN; got {x!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if p_adjusted >= alpha or estimate == 0:
        return "no detectable difference"
    return "better" if (estimate > 0) == higher_is_better else "worse"


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The (1 - level) / 2 and (1 + level) / 2 quantiles of the finite values (NaN, NaN if none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)
