"""Replicate retrieval of treatment wells (rxsweep.metrics.replicate_retrieval.replicate_map and the
``queries`` mask of replicate_retrieval): a hand-computed example, the fast path against copairs
itself, and retrieved_fraction against embeddings whose answer is known."""

from __future__ import annotations

import math
import tempfile

import copairs.map as copairs_map
import numpy as np
import pandas as pd
import pytest

from rxsweep.metrics.replicate_retrieval import (PER_LABEL_COLUMNS, TREATMENT, replicate_map,
                                                 replicate_retrieval)


def _at(degrees: float, z: float = 0.0) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), z]


# ----------------------------------------------------------------------------- by hand

# Two experiments of three wells: siRNA 1 and 2 (treatments) and a positive control (9), placed
# on the unit circle at these angles, so each cosine is cos(angle difference).
HAND = pd.DataFrame({
    "experiment": ["A", "A", "A", "B", "B", "B"],
    "label": [1, 2, 9, 1, 2, 9],
    "well_type": [TREATMENT, TREATMENT, "positive_control"] * 2,
    "angle": [0, 90, 45, 60, 80, 5],
})


def test_hand_example_treatment_queries_and_controls_as_negatives():
    X = np.array([_at(a) for a in HAND["angle"]])
    got = replicate_map(X, HAND["label"], HAND["experiment"], HAND["well_type"])
    # Each treatment query has 3 candidates (the other experiment's wells) and 1 positive:
    #   a1 (0°):  b3 5° cos .996, b1 60° .500, b2 80° .174 -> positive at rank 2: AP 1/2
    #   a2 (90°): b2 80° .985, b1 60° .866, b3 5° .087    -> rank 1:            AP 1
    #   b1 (60°): a3 45° .966, a2 90° .866, a1 0° .500    -> rank 3:            AP 1/3
    #   b2 (80°): a2 90° .985, a3 45° .819, a1 0° .174    -> rank 1:            AP 1
    # The control b3 / a3 outranks the replicate of a1 / b1: controls are negatives.
    assert got["map"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 1) / 4, abs=1e-12)
    assert got["n_queries"] == 4 and got["chance"] == pytest.approx(1 / 3, abs=1e-12)
    per_label = got["per_label"].set_index("label")
    assert sorted(per_label.index) == [1, 2]  # the control is never a query
    assert per_label.loc[1, "mean_average_precision"] == pytest.approx((1 / 2 + 1 / 3) / 2, abs=1e-12)
    assert per_label.loc[2, "mean_average_precision"] == pytest.approx(1.0, abs=1e-12)
    assert list(got["per_label"].columns) == list(PER_LABEL_COLUMNS)
    # Querying every well adds the controls a3 (b3 at rank 3: 1/3) and b3 (a3 at rank 2: 1/2)
    all_wells = replicate_retrieval(X, HAND["label"], HAND["experiment"])
    assert all_wells["map"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 1 + 1 / 3 + 1 / 2) / 6, abs=1e-12)


def test_easy_controls_do_not_change_the_treatment_score():
    """Two controls an experiment, identical and orthogonal to every other well: they retrieve each
    other perfectly and rank last for every treatment query. All-wells mAP rises; map does not."""
    easy = pd.DataFrame({"experiment": ["A", "A", "B", "B"], "label": 10, "well_type": "positive_control",
                         "angle": 0})
    wells = pd.concat([HAND, easy], ignore_index=True)
    X = np.array([_at(a) for a in HAND["angle"]] + [[0.0, 0.0, 1.0]] * 4)
    got = replicate_map(X, wells["label"], wells["experiment"], wells["well_type"])
    assert got["map"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 1) / 4, abs=1e-12)
    assert got["n_queries"] == 4
    assert got["chance"] == pytest.approx(1 / 5, abs=1e-12)  # 5 candidates now: they are candidates
    all_wells = replicate_retrieval(X, wells["label"], wells["experiment"])
    assert all_wells["map"] == pytest.approx((1 / 2 + 1 + 1 / 3 + 1 + 1 / 3 + 1 / 2 + 4 * 1) / 10, abs=1e-12)
    assert all_wells["map"] > got["map"]


# ----------------------------------------------------------------------------- against copairs

def _plates(seed: int, n_exp: int = 4, n_sirna: int = 12, d: int = 24):
    """Experiments of unequal sizes: each holds a random subset of the treatment siRNAs (1-2 wells
    each), 3 positive controls x 2 wells and 2 untreated wells; one more siRNA, in E0 only, has
    no replicate elsewhere; profiles = a weak siRNA signal + noise (continuous: no ties)."""
    rng = np.random.default_rng(seed)
    rows = [("E0", n_sirna + 4, TREATMENT)] * 2
    for e in range(n_exp):
        held = rng.choice(n_sirna, size=rng.integers(n_sirna // 2, n_sirna + 1), replace=False)
        rows += [(f"E{e}", int(s), TREATMENT) for s in held for _ in range(rng.integers(1, 3))]
        rows += [(f"E{e}", n_sirna + c, "positive_control") for c in range(3) for _ in range(2)]
        rows += [(f"E{e}", n_sirna + 3, "negative_control")] * 2
    meta = pd.DataFrame(rows, columns=["experiment", "label", "well_type"])
    centres = rng.normal(size=(n_sirna + 5, d))
    X = 0.5 * centres[meta["label"]] + rng.normal(size=(len(meta), d))
    return meta, X


def _copairs_treatment_ap(meta: pd.DataFrame, X: np.ndarray) -> pd.DataFrame:
    """copairs' AP of every well (candidates: other experiments), rows of treatment wells kept."""
    ap = copairs_map.average_precision(meta, X, pos_sameby=["label"], pos_diffby=["experiment"], neg_sameby=[],
                                       neg_diffby=["label", "experiment"], progress_bar=False)
    return ap[ap["well_type"] == TREATMENT]


@pytest.mark.parametrize("seed", range(4))
def test_fast_path_equals_copairs_average_precision(seed):
    meta, X = _plates(seed, n_exp=3 + seed % 3)
    treat = (meta["well_type"] == TREATMENT).to_numpy()
    ref = _copairs_treatment_ap(meta, X)
    scored = ref[ref["n_pos_pairs"] > 0]
    assert 0 < len(scored) < treat.sum()  # some treatment wells have no replicate in another experiment
    # controls are candidates (negatives) of the treatment queries: all other-experiment wells count
    sizes = meta["experiment"].map(meta["experiment"].value_counts())
    assert (scored["n_total_pairs"] == len(meta) - sizes[scored.index]).all()

    got = replicate_retrieval(X, meta["label"], meta["experiment"], queries=treat)
    assert got["n_queries"] == len(scored) and got["n_skipped"] == treat.sum() - len(scored)
    assert got["map"] == pytest.approx(scored["average_precision"].mean(), abs=1e-6)
    assert got["chance"] == pytest.approx((scored["n_pos_pairs"] / scored["n_total_pairs"]).mean(), abs=1e-12)

    full = replicate_map(X, meta["label"], meta["experiment"], meta["well_type"], null_size=500, seed=3)
    assert full["map"] == got["map"] and full["n_queries"] == got["n_queries"] and full["chance"] == got["chance"]
    with tempfile.TemporaryDirectory() as cache:
        per_label = copairs_map.mean_average_precision(scored, ["label"], null_size=500, threshold=0.05, seed=3,
                                                       progress_bar=False, cache_dir=cache)
    ours = full["per_label"].set_index("label")
    per_label = per_label.set_index("label").loc[ours.index]
    np.testing.assert_allclose(ours["mean_average_precision"], per_label["mean_average_precision"], atol=1e-6)
    np.testing.assert_allclose(ours["p_value"], per_label["p_value"], atol=1e-12)
    np.testing.assert_allclose(ours["corrected_p_value"], per_label["corrected_p_value"], atol=1e-12)
    assert full["retrieved_fraction"] == per_label["below_corrected_p"].mean()


# ----------------------------------------------------------------------------- retrieved_fraction

def _design(seed: int, n_exp: int = 6, n_sirna: int = 20):
    """One well a treatment siRNA an experiment, 3 positive controls and 1 untreated well each."""
    labels = np.tile(np.r_[np.arange(n_sirna), n_sirna + np.arange(3), n_sirna + 3], n_exp)
    experiment = np.repeat(np.arange(n_exp), n_sirna + 4)
    well_type = np.where(labels < n_sirna, TREATMENT, np.where(labels < n_sirna + 3, "positive_control",
                                                               "negative_control"))
    return np.random.default_rng(seed), labels, experiment, well_type


@pytest.mark.parametrize("seed", range(3))
def test_strong_siRNA_signal_is_retrieved_for_every_siRNA(seed):
    rng, labels, experiment, well_type = _design(seed)
    X = 3.0 * rng.normal(size=(labels.max() + 1, 32))[labels] + rng.normal(size=(len(labels), 32))
    got = replicate_map(X, labels, experiment, well_type)
    assert got["retrieved_fraction"] == 1.0
    assert got["map"] > 0.95 and len(got["per_label"]) == 20


@pytest.mark.parametrize("seed", range(3))
def test_random_embedding_retrieves_about_nothing(seed):
    rng, labels, experiment, well_type = _design(seed)
    got = replicate_map(rng.normal(size=(len(labels), 32)), labels, experiment, well_type)
    assert got["retrieved_fraction"] <= 0.2
    assert abs(got["map"] - got["chance"]) < 0.1


def test_collapsed_embedding_scores_at_most_chance():
    """Everything ties: ranked against the query (copairs itself would give AP 1 to every query)."""
    _, labels, experiment, well_type = _design(0)
    got = replicate_map(np.ones((len(labels), 8)), labels, experiment, well_type)
    assert got["map"] <= got["chance"] and got["retrieved_fraction"] == 0.0


def test_nothing_to_score_is_nan():
    _, labels, experiment, _ = _design(0, n_exp=2)
    got = replicate_map(np.random.default_rng(0).normal(size=(len(labels), 4)), labels, experiment,
                        np.full(len(labels), "positive_control"))
    assert math.isnan(got["map"]) and math.isnan(got["retrieved_fraction"]) and math.isnan(got["chance"])
    assert got["n_queries"] == 0 and got["per_label"].empty
    assert list(got["per_label"].columns) == list(PER_LABEL_COLUMNS)


_X = np.random.default_rng(0).normal(size=(4, 2))
_E, _Y, _T = [0, 0, 1, 1], [0, 1, 0, 1], [TREATMENT] * 4

INVALID = [
    ("queries", lambda: replicate_retrieval(_X, _Y, _E, "euclidean")),
    ("queries", lambda: replicate_retrieval(_X, _Y, _E, queries=[1, 0, 1, 0])),
    ("queries", lambda: replicate_retrieval(_X, _Y, _E, queries=np.ones(3, bool))),
    ("well_type", lambda: replicate_map(_X, _Y, _E, _T[:3])),
    ("null_size", lambda: replicate_map(_X, _Y, _E, _T, null_size=0)),
    ("seed", lambda: replicate_map(_X, _Y, _E, _T, seed=-1)),
    ("experiment", lambda: replicate_map(_X, _Y, [0, 0, 0, 0], _T)),
]


@pytest.mark.parametrize("name,call", INVALID, ids=[f"{i}-{n}" for i, (n, _) in enumerate(INVALID)])
def test_invalid_arguments_name_the_argument(name, call):
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call()
