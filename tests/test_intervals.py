"""The verdict's bootstrap (rxsweep.metrics.intervals): each level by hand, Holm against
statsmodels, and the distinct-wells interval's width and coverage on a generator whose sampling
distribution is known (many independent test sets drawn from it)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests

from rxsweep.metrics.intervals import (UnitResampler, centred, holm, normal_p_value, percentile_interval,
                                       resample_units, seed_term, verdict_word)
from rxsweep.metrics.mixing import COMPOSITE_KEYS, batch_mixing_scores
from rxsweep.metrics.replicate_retrieval import replicate_retrieval
from rxsweep.metrics.well_profiles import mixing_parameters


def units_frame() -> pd.DataFrame:
    # HUVEC: 3 experiments (resampled); RPE: 2 (held fixed); labels 0-1 (rows interleaved on purpose)
    experiment = ["H1", "R1", "H2", "H3", "R2", "H1", "H2", "R1", "H3", "R2", "H1"]
    label = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    cell_type = ["HUVEC" if e.startswith("H") else "RPE" for e in experiment]
    return pd.DataFrame({"experiment": experiment, "cell_type": cell_type, "label": label})


def test_resample_units_draws_experiments_and_perturbations_within_cell_type():
    units = units_frame()
    got = resample_units(units, np.random.default_rng(5))
    rng = np.random.default_rng(5)  # by hand: HUVEC's experiments, then its labels; RPE's labels only
    cells = {("H1", 0): [0], ("H2", 0): [2], ("H3", 0): [3], ("H1", 1): [5, 10], ("H2", 1): [6], ("H3", 1): [8],
             ("R1", 0): [1], ("R2", 0): [4], ("R1", 1): [7], ("R2", 1): [9]}
    experiments = [["H1", "H2", "H3"][i] for i in rng.integers(0, 3, size=3)]
    labels = rng.integers(0, 2, size=2)
    expected = [cells[(e, label)] for e in experiments for label in labels]
    labels = rng.integers(0, 2, size=2)
    expected += [cells[(e, label)] for e in ("R1", "R2") for label in labels]
    np.testing.assert_array_equal(got, np.concatenate(expected))
    # a cell type below 3 experiments keeps each of them: every RPE label drawn appears in both
    rpe = units.iloc[got].query("cell_type == 'RPE'")
    assert set(rpe["experiment"]) == {"R1", "R2"} and len(rpe) == 4
    with pytest.raises(ValueError, match="lacks the columns"):
        resample_units(units.drop(columns="label"), np.random.default_rng(0))


def test_seed_term_restores_the_variance_of_a_mean_of_seeds():
    values = np.array([0.30, 0.20])  # 2 seeds: the variance of their mean is s^2 / 2 = 0.005 / 2
    draws = np.random.default_rng(0).integers(0, 2, size=(40000, 2))
    term = seed_term(values, draws)
    assert term.mean() == pytest.approx(0.0, abs=1e-3)
    assert term.var() == pytest.approx(np.var(values, ddof=1) / 2, rel=0.03)
    # the plain bootstrap would give half of it (the (n - 1) / n shrinkage)
    plain = values[draws].mean(axis=1) - values.mean()
    assert plain.var() == pytest.approx(np.var(values, ddof=1) / 4, rel=0.03)
    np.testing.assert_array_equal(seed_term(np.array([0.7]), np.zeros((5, 1), int)), np.zeros(5))


def test_centred_puts_the_median_on_the_full_value():
    raw = np.array([[1.0, np.nan], [3.0, np.nan], [2.0, np.nan]])
    got = centred(raw, np.array([10.0, 5.0]))
    np.testing.assert_allclose(got[:, 0], [9.0, 11.0, 10.0])
    assert np.isnan(got[:, 1]).all()


def test_holm_matches_statsmodels_and_keeps_nan_out_of_the_family():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.2, 0.5])
    np.testing.assert_allclose(holm(p), multipletests(p, method="holm")[1])
    with_nan = holm(np.r_[p, np.nan])
    np.testing.assert_allclose(with_nan[:-1], multipletests(p, method="holm")[1])
    assert np.isnan(with_nan[-1])


def test_normal_p_value_and_words():
    assert normal_p_value(1.96, 1.0) == pytest.approx(0.05, abs=1e-4)
    assert normal_p_value(0.0, 0.0) == 1.0 and normal_p_value(0.1, 0.0) == 0.0
    assert verdict_word(0.02, 0.01) == "better" and verdict_word(-0.02, 0.01) == "worse"
    assert verdict_word(0.02, 0.05) == "no detectable difference"  # p must be below alpha
    assert verdict_word(0.02, 0.01, higher_is_better=False) == "worse"
    with pytest.raises(ValueError, match="^p_adjusted must be a number"):
        verdict_word(0.1, math.nan)
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)


# ------------------------------------------------------------------ width and coverage, known truth
#
# One cell type, two experiments with fixed batch shifts; each experiment holds every treatment
# siRNA once and 6 control wells (2 control siRNAs). A test set draws the perturbations' effects
# and every well's noise afresh (the experiments are fixed, as the verdict's default study holds
# its 2 experiments a cell type fixed), so the true sampling distribution of a statistic is its
# spread over independent test sets. The interval is built as rxsweep.analysis.verdict builds it
# for one seed: resamples of perturbations (UnitResampler), the statistic of each with its
# repeated wells, centred on the full value.

N_TREAT, N_CONTROL, DIM = 30, 6, 16
SHIFT = {"E1": np.random.default_rng(2024).normal(scale=0.6, size=DIM),
         "E2": np.random.default_rng(2025).normal(scale=0.6, size=DIM)}


def draw_test_set(rng: np.random.Generator) -> pd.DataFrame:
    effects = rng.normal(size=(N_TREAT + 2, DIM))
    rows = []
    for experiment, shift in SHIFT.items():
        labels = list(range(N_TREAT)) + [N_TREAT + i % 2 for i in range(N_CONTROL)]
        for w, label in enumerate(labels):
            rows.append({"well_id": f"{experiment}_{w:02d}", "experiment": experiment, "cell_type": "HUVEC",
                         "label": label, "well_type": "treatment" if label < N_TREAT else "positive_control",
                         "embedding": effects[label] + shift + rng.normal(scale=1.3, size=DIM)})
    return pd.DataFrame(rows)


def statistic_map(frame: pd.DataFrame, rows: np.ndarray) -> float:
    return replicate_retrieval(np.stack(frame["embedding"])[rows], frame["label"].to_numpy()[rows],
                               frame["experiment"].to_numpy()[rows],
                               queries=(frame["well_type"] == "treatment").to_numpy()[rows])["map"]


def statistic_mixing(frame: pd.DataFrame, rows: np.ndarray) -> float:
    k = mixing_parameters(frame)  # the full set's neighbour counts, on every resample
    return batch_mixing_scores(np.stack(frame["embedding"])[rows], frame["experiment"].to_numpy()[rows],
                               strata=frame["cell_type"].to_numpy()[rows], units=rows, ilisi_k=k["k_ilisi"],
                               perplexity=k["perplexity"], kbet_k=k["k_kbet"], gc_k=k["k_graph"],
                               n_splits=k["n_splits"], keys=COMPOSITE_KEYS)["mixing"]


def interval(frame: pd.DataFrame, statistic, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    resampler = UnitResampler(frame)
    raw = np.array([statistic(frame, resampler.draw(rng)) for _ in range(n_boot)])
    return percentile_interval(centred(raw, statistic(frame, np.arange(len(frame)))), 0.95)


@pytest.mark.calibration
@pytest.mark.parametrize("statistic, draws, n_boot", [(statistic_map, 100, 200), (statistic_mixing, 60, 80)],
                         ids=["replicate_map", "mixing"])
def test_interval_has_the_true_width_and_covers(statistic, draws, n_boot):
    truth_rng, test_rng, boot_rng = (np.random.default_rng(s) for s in (1, 2, 3))
    values = []
    for _ in range(300):
        frame = draw_test_set(truth_rng)
        values.append(statistic(frame, np.arange(len(frame))))
    true_mean, true_width = np.mean(values), np.subtract(*np.quantile(values, [0.975, 0.025]))
    widths, covered = [], 0
    for _ in range(draws):
        lo, hi = interval(draw_test_set(test_rng), statistic, n_boot, boot_rng)
        widths.append(hi - lo)
        covered += lo <= true_mean <= hi
    assert abs(np.mean(widths) / true_width - 1) <= 0.2, (np.mean(widths), true_width)
    assert 0.90 <= covered / draws <= 0.99, covered / draws
