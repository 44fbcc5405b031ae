"""Metrics of the verdict: well profiles and well-level mixing, post-hoc corrections (sphering,
Harmony). Expected values are computed by hand in each test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_samples

from rxsweep.metrics.embedding_scores import (MIXING_KEYS, MIXING_PARAMETER_KEYS, mixing_scores,
                                              retention_scores)
from rxsweep.metrics.mixing import COMPOSITE_KEYS, SCORE_KEYS, batch_mixing_scores
from rxsweep.metrics.posthoc import CORRECTIONS, corrected_profiles, harmony, harmony_nclust, sphere_on_controls
from rxsweep.metrics.replicate_retrieval import replicate_map
from rxsweep.metrics.well_profiles import mixing_k, stack, well_mixing_scores, well_profiles


def site_frame(embedding, well_id, experiment, label, split="heldout_val", cell_type="HUVEC",
               well_type="treatment") -> pd.DataFrame:
    """An embeddings.parquet-like frame: one row a site."""
    n = len(well_id)
    col = lambda v: v if isinstance(v, (list, np.ndarray)) else [v] * n  # noqa: E731
    frame = pd.DataFrame({"site_id": [f"{w}_{i}" for i, w in enumerate(well_id)], "well_id": well_id,
                          "experiment": col(experiment), "plate": 1,
                          "well": [w.rsplit("_", 1)[-1] for w in well_id], "cell_type": col(cell_type),
                          "well_type": col(well_type), "split": col(split), "label": col(label)})
    frame["prediction"] = frame["label"]
    frame["embedding"] = list(np.asarray(embedding, dtype=np.float32))
    return frame


# ----------------------------------------------------------------------------- well_profiles

def test_well_profiles_are_site_means_sorted_by_well():
    # 6 sites of 3 wells, rows shuffled: E1_1_B03 has 3 sites, E1_1_B02 2, E2_1_B02 1 (other split)
    wells = ["E1_1_B03", "E1_1_B02", "E2_1_B02", "E1_1_B03", "E1_1_B02", "E1_1_B03"]
    emb = [[1, 2], [10, 0], [7, 7], [3, 2], [20, 4], [5, 5]]
    frame = site_frame(emb, wells, ["E1", "E1", "E2", "E1", "E1", "E1"], [3, 2, 2, 3, 2, 3],
                       split=["v", "v", "t", "v", "v", "v"])
    frame["log_probs"] = list(np.log(np.array([[.5, .5], [.25, .75], [1, 1], [.5, .5], [.25, .75], [.5, .5]])))
    got = well_profiles(frame)
    assert list(got.columns) == ["well_id", "experiment", "plate", "well", "cell_type", "well_type", "split",
                                 "label", "n_sites", "embedding"]
    assert got["well_id"].tolist() == ["E1_1_B02", "E1_1_B03", "E2_1_B02"]
    assert got["n_sites"].tolist() == [2, 3, 1]
    assert got["label"].tolist() == [2, 3, 2] and got["split"].tolist() == ["v", "v", "t"]
    expected = [[15, 2], [3, 3], [7, 7]]  # (10+20)/2, (0+4)/2; (1+3+5)/3, (2+2+5)/3; the one site
    assert all(v.dtype == np.float32 for v in got["embedding"])
    np.testing.assert_array_equal(stack(got["embedding"]), expected)
    only_v = well_profiles(frame, split="v")
    assert only_v["well_id"].tolist() == ["E1_1_B02", "E1_1_B03"]
    lp = well_profiles(frame, "v", column="log_probs")
    assert "embedding" not in lp.columns
    np.testing.assert_allclose(stack(lp["log_probs"]), np.log([[.25, .75], [.5, .5]]), rtol=1e-6)
    assert well_profiles(frame, split="nope").empty


def test_well_profiles_errors_name_the_argument():
    frame = site_frame([[1.0], [2.0]], ["E1_1_B02", "E1_1_B02"], "E1", [1, 2])
    with pytest.raises(ValueError, match=r"^frame columns \['label'\] differ"):
        well_profiles(frame)
    with pytest.raises(ValueError, match=r"^frame lacks columns \['log_probs'\]"):
        well_profiles(frame, column="log_probs")
    with pytest.raises(ValueError, match="^column"):
        well_profiles(frame, column="label")
    with pytest.raises(ValueError, match="^frame must"):
        well_profiles(frame.to_numpy())


# ----------------------------------------------------------------------------- mixing_k

@pytest.mark.parametrize("n_min, expected", [
    (10_000, (90, 30.0, 50, 15)),   # large strata: the published defaults
    (360, (90, 30.0, 50, 15)),      # the smallest n_min where they all apply
    (200, (50, 50 / 3, 50, 15)),    # 200 // 4 = 50
    (72, (18, 6.0, 18, 15)),        # the tiny preset: 2 experiments x 36 wells a cell type
    (40, (10, 10 / 3, 10, 10)),
    (15, (3, 1.0, 3, 3)),           # 15 // 4 = 3, the fewest neighbours scored
])
def test_mixing_k_rule(n_min, expected):
    k = mixing_k(n_min)
    assert list(k) == ["k_ilisi", "perplexity", "k_kbet", "k_graph"]
    assert (k["k_ilisi"], k["perplexity"], k["k_kbet"], k["k_graph"]) == pytest.approx(expected)
    assert k["perplexity"] < k["k_ilisi"] and max(k["k_ilisi"], k["k_kbet"], k["k_graph"]) <= n_min / 4


@pytest.mark.parametrize("bad", [11, 0, -5, 12.0, True, "72"])
def test_mixing_k_refuses_tiny_or_non_integer_strata(bad):
    with pytest.raises(ValueError, match="^n_min"):
        mixing_k(bad)


# ----------------------------------------------------------------------------- well-level mixing

def two_experiment_sites(well_sd: float, batch_shift: float = 0.0, seed: int = 0, n_labels: int = 8,
                         wells_per_label: int = 8, d: int = 16) -> pd.DataFrame:
    """Two experiments of one cell type, each label in both; 2 sites a well:
    site = label effect + well effect (shared by the well's 2 sites) + site noise (0.01) + batch shift."""
    rng = np.random.default_rng(seed)
    label_effect = rng.normal(size=(n_labels, d))
    wells, exps, labels = [], [], []
    for e, exp in enumerate(["HUVEC-01", "HUVEC-02"]):
        for lab in range(n_labels):
            for w in range(wells_per_label):
                wells += [f"{exp}_1_{chr(66 + lab)}{w + 2:02d}"] * 2
                exps += [exp] * 2
                labels += [lab] * 2
    n = len(wells)
    well_effect = np.repeat(rng.normal(size=(n // 2, d)) * well_sd, 2, axis=0)
    shift = (np.array(exps) == "HUVEC-02")[:, None] * batch_shift
    X = label_effect[labels] + well_effect + rng.normal(size=(n, d)) * 0.01 + shift
    return site_frame(X, wells, exps, labels)


def test_well_mixing_is_batch_mixing_of_the_profiles_with_the_k_rule():
    frame = two_experiment_sites(well_sd=0.5)
    got = well_mixing_scores(frame)
    # by hand: the 128 profiles are the means of each well's 2 consecutive sites
    X = stack(frame["embedding"], np.float64)
    profiles = (X[0::2] + X[1::2]) / 2
    per_well = frame.iloc[0::2]
    k = mixing_k(128)
    assert (k["k_ilisi"], k["k_kbet"], k["k_graph"]) == (32, 32, 15)
    ref = batch_mixing_scores(profiles.astype(np.float32), per_well["experiment"].to_numpy(),
                              strata=per_well["cell_type"].to_numpy(), ilisi_k=32, perplexity=32 / 3,
                              kbet_k=32, gc_k=15, n_splits=5)
    assert set(got) == {*MIXING_KEYS, *MIXING_PARAMETER_KEYS}
    for key in SCORE_KEYS:
        assert got[f"mixing/{key}"] == pytest.approx(ref[key], abs=1e-6), key
    assert got["mixing"] == pytest.approx(ref["mixing"], abs=1e-6)
    assert (got["mixing/k_ilisi"], got["mixing/perplexity"], got["mixing/k_kbet"], got["mixing/k_graph"],
            got["mixing/n_profiles"]) == (32, pytest.approx(32 / 3), 32, 15, 128)
    assert isinstance(got["mixing/n_profiles"], int)
    assert mixing_scores(frame, "heldout_val") == got  # embedding_scores delegates


def test_well_level_mixing_does_not_punish_the_sites_of_a_well_for_agreeing():
    """No batch effect, a strong well effect: per site, each site's nearest neighbour is its
    sibling (same batch); per well the effect is one point's offset, as harmless as none."""
    shared = two_experiment_sites(well_sd=0.5)
    without = two_experiment_sites(well_sd=0.0)
    well = well_mixing_scores(shared)
    # per-site scores on the same sites, same neighbourhood sizes, wells as CV groups
    per_site = batch_mixing_scores(stack(shared["embedding"]), shared["experiment"].to_numpy(),
                                   strata=shared["cell_type"].to_numpy(),
                                   groups=shared["well_id"].to_numpy(), ilisi_k=well["mixing/k_ilisi"],
                                   perplexity=well["mixing/perplexity"], kbet_k=well["mixing/k_kbet"],
                                   gc_k=well["mixing/k_graph"])
    reference = well_mixing_scores(without)
    assert well["mixing"] - per_site["mixing"] > 0.04
    assert well["mixing/ilisi"] - per_site["ilisi"] > 0.2
    # as harmless as none on the scores that read batch labels. Graph connectivity is left out of
    # this comparison: it reads no batch labels, and with the cell type as its label (as scib) it
    # asks whether the 8 siRNA clusters of 16 wells touch at k = 15, which the well effect's
    # spread decides (0.375 with it, 0.125 without), not mixing.
    batch_label_keys = [f"mixing/{k}" for k in COMPOSITE_KEYS if k != "graph_connectivity"]
    assert abs(np.mean([well[k] for k in batch_label_keys])
               - np.mean([reference[k] for k in batch_label_keys])) < 0.015


def test_a_strong_batch_effect_scores_low():
    frame = two_experiment_sites(well_sd=0.5, batch_shift=20.0)
    got = well_mixing_scores(frame)
    # separated experiments of 64 profiles, k = 32 < 64: every neighbourhood is one experiment
    assert got["mixing/ilisi"] == 0.0 and got["mixing/kbet"] == 0.0 and got["mixing/batch_probe"] == 0.0
    assert got["mixing/graph_connectivity"] == 0.5  # the cell type (the label): 2 islands of 64 wells
    # batch ASW by hand, the cell type as label (as scib): mean(1 - |s_i|) over the cell type's
    # profiles, s = sklearn's silhouette of batch
    X = stack(frame["embedding"], np.float64)
    profiles, per_well = (X[0::2] + X[1::2]) / 2, frame.iloc[0::2]
    asw = np.mean(1 - np.abs(silhouette_samples(profiles, per_well["experiment"])))
    assert got["mixing/silhouette_batch"] == pytest.approx(asw, abs=1e-6)
    assert got["mixing"] == pytest.approx(np.mean([got[f"mixing/{k}"] for k in COMPOSITE_KEYS]))


def test_mixing_is_nan_with_a_note_when_nothing_can_be_scored():
    frame = two_experiment_sites(well_sd=0.5)
    one_experiment = frame[frame["experiment"] == "HUVEC-01"]
    got = well_mixing_scores(one_experiment)
    assert set(got) == {*MIXING_KEYS, *MIXING_PARAMETER_KEYS, "mixing_note"}
    assert all(math.isnan(got[k]) for k in (*MIXING_KEYS, *MIXING_PARAMETER_KEYS[:-1]))
    assert got["mixing/n_profiles"] == 0 and "no cell type has 2 or more experiments" in got["mixing_note"]
    # 2 experiments x 5 wells = 10 profiles < 12: too few to mix
    few = frame[frame["well"].str[1:].astype(int).between(2, 3) & frame["label"].isin([0, 1, 2])]
    few = few[~((few["label"] == 2) & (few["well"].str[1:] == "03"))]  # 5 wells an experiment
    got = well_mixing_scores(few)
    assert math.isnan(got["mixing"]) and got["mixing/n_profiles"] == 10
    assert "too few well profiles" in got["mixing_note"] and "n_min=10" in got["mixing_note"]
    assert math.isnan(well_mixing_scores(frame, "heldout_test")["mixing"])  # no rows of that split


# ----------------------------------------------------------------------------- retention_scores

def test_retention_accuracy_counts_treatment_wells_only():
    # 2 experiments x wells B02 (label 0), B03 (1) treatment, B04 (2) positive, B05 (3) negative control
    design = pd.DataFrame({"plate_key": "T/1", "label": [0, 1, 2, 3],
                           "well_type": ["treatment", "treatment", "positive_control", "negative_control"]})
    logits = {("E1", "B02"): [0, 5, 0, 0], ("E1", "B03"): [5, 0, 0, 0],   # swapped: both wrong
              ("E2", "B02"): [5, 0, 0, 0], ("E2", "B03"): [5, 3, 0, 0],   # B03 wrong by argmax only
              **{(e, w): np.eye(4)[c] * 5 for e in ("E1", "E2") for w, c in (("B04", 2), ("B05", 3))}}
    rows = [(e, w) for e in ("E1", "E2") for w in ("B02", "B03", "B04", "B05") for _ in range(2)]
    types = {"B02": "treatment", "B03": "treatment", "B04": "positive_control", "B05": "negative_control"}
    rng = np.random.default_rng(0)
    frame = site_frame(rng.normal(size=(16, 4)), [f"{e}_1_{w}" for e, w in rows], [e for e, _ in rows],
                       [{"B02": 0, "B03": 1, "B04": 2, "B05": 3}[w] for _, w in rows],
                       well_type=[types[w] for _, w in rows])
    z = np.array([logits[r] for r in rows], dtype=np.float64)
    frame["log_probs"] = list((z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(np.float16))
    got = retention_scores(frame, design)
    # argmax: treatment sites right = E2 B02 (2 of 8); controls all 8 right
    assert got["heldout_val_acc"] == 2 / 8
    assert got["heldout_val_acc_controls"] == 1.0
    assert got["heldout_val_acc_all"] == 10 / 16
    assert got["heldout_val_top5"] == 1.0  # 4 classes
    # plate constraint: E1's 2 wells assigned 0->B03... (sum 5+5 beats 0+0): both wrong;
    # E2: B02->0, B03->1 (5+3 beats 0+5): both right. Treatment: 4 of 8 (with controls it would be 12/16)
    assert got["heldout_val_plate_acc"] == 4 / 8
    # replicate retrieval: the treatment wells are the queries, every well of the other experiment a candidate
    wells = well_profiles(frame)
    ref = replicate_map(stack(wells["embedding"]), wells["label"].to_numpy(), wells["experiment"].to_numpy(),
                        wells["well_type"].to_numpy())
    assert got["heldout_val_replicate_map"] == ref["map"] and got["heldout_val_replicate_chance"] == ref["chance"]
    assert got["heldout_val_retrieved_fraction"] == ref["retrieved_fraction"]
    assert ref["n_queries"] == 4 and ref["chance"] == 1 / 4  # 4 treatment wells, each 1 replicate in 4 candidates


# ----------------------------------------------------------------------------- sphering

def test_sphering_whitens_each_experiments_controls():
    rng = np.random.default_rng(1)
    d, eps = 5, 0.1
    X = np.concatenate([rng.normal(size=(20, d)) @ rng.normal(size=(d, d)) + 3,
                        rng.normal(size=(4, d)) * [1, 2, 3, 4, 5] - 7])      # E2: 3 of its 4 rows controls
    experiment = np.array(["E1"] * 20 + ["E2"] * 4)
    is_control = np.r_[np.arange(20) < 12, [True, True, True, False]]       # E1: 12 controls, E2: 3 (< d)
    out = sphere_on_controls(X, experiment, is_control, epsilon=eps)
    for e in ("E1", "E2"):
        c = is_control & (experiment == e)
        S = np.cov(X[c], rowvar=False)
        lam = eps * np.trace(S) / d
        s, V = np.linalg.eigh(S)
        W = V @ np.diag(1 / np.sqrt(np.clip(s, 0, None) + lam)) @ V.T
        np.testing.assert_allclose(out[c].mean(axis=0), 0, atol=1e-12)
        # the controls' covariance is identity shrunk by the regulariser: V diag(s / (s + lam)) V^T
        np.testing.assert_allclose(np.cov(out[c], rowvar=False), V @ np.diag(s / (s + lam)) @ V.T, atol=1e-10)
        rows = experiment == e
        np.testing.assert_allclose(out[rows], (X[rows] - X[c].mean(axis=0)) @ W, atol=1e-12)


def test_sphering_removes_a_per_experiment_shift_and_scale():
    rng = np.random.default_rng(2)
    base = rng.normal(size=(30, 8)) @ rng.normal(size=(8, 8))             # 30 wells, 10 of them controls
    noise = rng.normal(size=(30, 8)) * 1e-3
    X = np.concatenate([base, 3.0 * (base + noise) + rng.normal(size=8) * 10])  # E2 = 3 E1 + shift
    experiment = np.repeat(["E1", "E2"], 30)
    is_control = np.tile(np.arange(30) < 10, 2)
    out = sphere_on_controls(X, experiment, is_control)
    # each well (same label) of E1 and E2 comes out in the same place: only the noise remains,
    # 1e-3 of the spread, whitened like the rest (gain <= 1/sqrt(0.1 * mean eigenvalue))
    spread = np.abs(out[:30] - out[:30].mean(axis=0)).mean()
    assert np.abs(out[:30] - out[30:]).max() < 0.01 * spread
    assert np.abs(X[:30] - X[30:]).mean() > np.abs(X[:30] - X[:30].mean(axis=0)).mean()  # before: apart
    exact = sphere_on_controls(np.concatenate([base, 3.0 * base - 5]), experiment, is_control)
    np.testing.assert_allclose(exact[:30], exact[30:], atol=1e-9)   # no noise: exactly removed


def test_sphering_errors_name_the_argument():
    X = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="^is_control marks 1 profile"):
        sphere_on_controls(X, np.repeat(["a", "b"], 3), np.array([1, 1, 0, 1, 0, 0], bool))
    with pytest.raises(ValueError, match="^is_control must be a bool"):
        sphere_on_controls(X, np.repeat(["a", "b"], 3), np.ones(6))
    with pytest.raises(ValueError, match="^epsilon"):
        sphere_on_controls(X, np.repeat(["a", "b"], 3), np.ones(6, bool), epsilon=0)
    with pytest.raises(ValueError, match="^profiles"):
        sphere_on_controls(X[:, 0], np.repeat(["a", "b"], 3), np.ones(6, bool))


# ----------------------------------------------------------------------------- harmony

def batch_shifted(seed: int = 0, n: int = 120, d: int = 8):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    batch = np.repeat(["E1", "E2"], n // 2)
    X = rng.normal(size=(3, d))[labels] * 3 + rng.normal(size=(n, d)) * 0.3
    X[batch == "E2", 0] += 4.0
    return X, batch, labels


def centroid_gap(X, batch):
    return float(np.linalg.norm(X[batch == "E1"].mean(axis=0) - X[batch == "E2"].mean(axis=0)))


def test_harmony_removes_most_of_a_batch_shift_deterministically():
    X, batch, _ = batch_shifted()
    assert harmony_nclust(len(X)) == 4 and harmony_nclust(10) == 1 and harmony_nclust(10**5) == 100
    out = harmony(X, batch, seed=0)
    assert out.shape == X.shape
    assert centroid_gap(out, batch) < 0.5 * centroid_gap(X, batch)
    np.testing.assert_array_equal(harmony(X, batch, seed=0), out)
    tiny = harmony(X[::12], batch[::12])                          # 10 profiles: one cluster, still runs
    assert centroid_gap(tiny, batch[::12]) < 0.5 * centroid_gap(X[::12], batch[::12])
    with pytest.raises(ValueError, match="^batch must contain at least 2"):
        harmony(X, np.repeat("E1", len(X)))
    with pytest.raises(ValueError, match="^kw must not set 'random_state'"):
        harmony(X, batch, random_state=3)


def test_corrected_profiles_registry():
    X, batch, labels = batch_shifted()
    wells = pd.DataFrame({"well_id": [f"w{i:03d}" for i in range(len(X))], "experiment": batch,
                          "cell_type": "HUVEC", "label": labels,
                          "well_type": np.where(np.arange(len(X)) % 4 == 0, "positive_control", "treatment")})
    wells["embedding"] = list(X.astype(np.float32))
    # a second cell type with one experiment: harmony leaves it alone
    lone = wells.iloc[:10].assign(cell_type="RPE", experiment="R1", well_id=[f"r{i}" for i in range(10)])
    both = pd.concat([wells, lone], ignore_index=True)
    before = stack(both["embedding"]).copy()
    out = corrected_profiles(both, "harmony")
    np.testing.assert_array_equal(stack(both["embedding"]), before)       # the input is not changed
    np.testing.assert_array_equal(stack(out["embedding"])[120:], before[120:])
    np.testing.assert_allclose(stack(out["embedding"])[:120], harmony(X.astype(np.float32), batch),
                               rtol=1e-6, atol=1e-6)
    assert out.drop(columns="embedding").equals(both.drop(columns="embedding"))
    sphered = corrected_profiles(wells, "sphering")
    np.testing.assert_allclose(stack(sphered["embedding"]),
                               sphere_on_controls(X.astype(np.float32), batch, np.arange(120) % 4 == 0),
                               rtol=1e-5, atol=1e-6)
    assert set(CORRECTIONS) == {"sphering", "harmony"}
    with pytest.raises(ValueError, match=r"^unknown correction 'combat'; known: \['harmony', 'sphering'\]"):
        corrected_profiles(wells, "combat")
