"""rxsweep.metrics.mixing against slow references written from the formulas, known answers,
dose-responses and argument validation. CPU only, a few seconds.

batch_mixing_scores uses the cell type (its stratum) as the label of silhouette_batch and graph
connectivity, as scib does, and ``mixing`` = the mean of COMPOSITE_KEYS (silhouette left out);
the tests under "label = cell type" check both against values computed here by hand or with
sklearn, and show what the old siRNA label gave on replicate pairs.

Tolerances: kNN indices must match exactly and distances to 1e-12 (both float64 direct
differences); LISI / silhouette to 1e-6 absolute (the references use the unshifted scib formula
and sklearn; differences are rounding); kBET, graph connectivity and the probe exactly (counts).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from scipy.sparse.csgraph import connected_components
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score, silhouette_samples
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from rxsweep.metrics.mixing import (
    COMPOSITE_KEYS,
    SCORE_KEYS,
    batch_mixing_scores,
    batch_probe,
    graph_connectivity,
    ilisi,
    kbet_acceptance,
    knn,
    lisi_knn,
    silhouette_batch,
)
from rxsweep.metrics.mixing import neighbors as neighbors_mod

# ----------------------------------------------------------------------------- slow references


def ref_knn(X, k):
    """Brute force: all float64 direct-difference distances, order by (distance, index)."""
    n = len(X)
    D2 = np.array([[np.sum((X[i] - X[j]) ** 2) for j in range(n)] for i in range(n)])
    idx = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        others.sort(key=lambda j: (D2[i, j], j))
        idx[i] = others[:k]
    return np.sqrt(np.take_along_axis(D2, idx, 1)), idx


def ref_lisi(D, idx, labels, perplexity, tol=1e-5):
    """scib's compute_simpson_index / Harmony's C++ loop, one point at a time, unshifted."""
    n_labels = labels.max() + 1
    out = np.empty(len(D))
    for i in range(len(D)):
        beta, betamin, betamax = 1.0, -np.inf, np.inf

        def hbeta(b):
            P = np.exp(-D[i] * b)
            s = P.sum()
            return math.log(s) + b * np.sum(D[i] * P) / s, P / s

        H, P = hbeta(beta)
        Hdiff, tries = H - math.log(perplexity), 0
        while abs(Hdiff) > tol and tries < 50:
            if Hdiff > 0:
                betamin = beta
                beta = beta * 2 if betamax == np.inf else (beta + betamax) / 2
            else:
                betamax = beta
                beta = beta / 2 if betamin == -np.inf else (beta + betamin) / 2
            H, P = hbeta(beta)
            Hdiff, tries = H - math.log(perplexity), tries + 1
        sumP = np.zeros(n_labels)
        for p, j in zip(P, idx[i]):
            sumP[labels[j]] += p
        out[i] = 1.0 / np.dot(sumP, sumP)
    return out


def ref_kbet(idx, batch, alpha):
    n, k = idx.shape
    B = batch.max() + 1
    freq = np.bincount(batch) / n
    accepted = 0
    for i in range(n):
        c = Counter(batch[idx[i]].tolist())
        stat = sum((c.get(b, 0) - k * freq[b]) ** 2 / (k * freq[b]) for b in range(B))
        accepted += chi2.sf(stat, B - 1) >= alpha
    return accepted / n


def ref_silhouette_batch(X, batch, labels):
    scores = []
    for lab in np.unique(labels):
        m = labels == lab
        nb = len(np.unique(batch[m]))
        if nb == 1 or nb == m.sum():
            continue
        scores.append(np.mean(1 - np.abs(silhouette_samples(X[m], batch[m]))))
    return float(np.mean(scores))


def ref_graph_connectivity(idx, labels):
    n = len(idx)
    A = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in idx[i]:
            A[i, j] = A[j, i] = True
    shares = []
    for lab in np.unique(labels):
        m = np.flatnonzero(labels == lab)
        _, comp = connected_components(A[np.ix_(m, m)], directed=False)
        shares.append(np.bincount(comp).max() / len(m))
    return float(np.mean(shares))


# ----------------------------------------------------------------------------- data


def partly_mixed(n=200, d=5, n_batches=3, shift=1.5, seed=0):
    """Batches offset by ``shift`` along different axes: neither mixed nor separated."""
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, n_batches, n)
    labels = rng.integers(0, 4, n)
    X = rng.normal(size=(n, d)) + shift * np.eye(d)[batch] + 2.0 * np.eye(d)[(labels + 1) % d]
    return X, batch, labels


def separated(n=400, d=8, n_batches=4, gap=60.0, seed=0):
    rng = np.random.default_rng(seed)
    batch = np.repeat(np.arange(n_batches), n // n_batches)
    labels = rng.integers(0, 3, batch.size)
    X = rng.normal(size=(batch.size, d)) + gap * np.eye(d)[batch]
    return X, batch, labels


# ----------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("direct_cells", [0, 1 << 22], ids=["screen", "direct"])
@pytest.mark.parametrize("case", ["gaussian", "duplicates", "grid_ties", "k_near_n"])
def test_knn_matches_brute_force(case, direct_cells, monkeypatch):
    monkeypatch.setattr(neighbors_mod, "_DIRECT_CELLS", direct_cells)  # both paths: the screen and small inputs
    rng = np.random.default_rng(1)
    if case == "gaussian":
        X, k = rng.normal(size=(150, 6)), 20
    elif case == "duplicates":  # 30 points, each repeated 5 times, shuffled: ties at distance 0
        X, k = np.repeat(rng.normal(size=(30, 4)), 5, axis=0)[rng.permutation(150)], 12
    elif case == "grid_ties":  # integer grid: many exactly equal distances
        X, k = rng.integers(0, 3, size=(150, 3)).astype(float), 25
    else:
        X, k = rng.normal(size=(40, 3)), 39
    dist, idx = knn(X, k)
    rdist, ridx = ref_knn(X, k)
    np.testing.assert_array_equal(idx, ridx)
    np.testing.assert_allclose(dist, rdist, rtol=0, atol=1e-12)
    assert not (idx == np.arange(len(X))[:, None]).any()


def test_knn_float32_screen_is_certified_or_redone(monkeypatch):
    """Heavy ties defeat the float32 screen's certificate; those rows must be redone exactly."""
    monkeypatch.setattr(neighbors_mod, "_DIRECT_CELLS", 0)  # the screen, not the small-input path
    calls = []
    real = neighbors_mod._redo_rows
    monkeypatch.setattr(neighbors_mod, "_redo_rows", lambda rows, *a: (calls.append(len(rows)), real(rows, *a)))
    X = np.repeat(np.arange(20.0)[:, None], 20, axis=0) @ np.ones((1, 3))  # 20 copies of 20 points
    dist, idx = knn(X, 5, block_size=64)
    rdist, ridx = ref_knn(X, 5)
    np.testing.assert_array_equal(idx, ridx)
    assert calls and sum(calls) > 0
    # and prefixes are exact too
    np.testing.assert_array_equal(knn(X, 3)[1], idx[:, :3])


@pytest.mark.parametrize("direct_cells", [0, 1 << 22], ids=["screen", "direct"])
def test_knn_extreme_scales(monkeypatch, direct_cells):
    monkeypatch.setattr(neighbors_mod, "_DIRECT_CELLS", direct_cells)
    rng = np.random.default_rng(2)
    X = rng.normal(size=(60, 4))
    for s in (1e-150, 1e150):
        dist, idx = knn(X * s, 7)
        rdist, ridx = ref_knn(X, 7)
        np.testing.assert_array_equal(idx, ridx)
        np.testing.assert_allclose(dist / s, rdist, rtol=1e-12)


# ----------------------------------------------------------------------------- metrics vs reference


def test_lisi_matches_reference_loop():
    X, batch, _ = partly_mixed()
    dist, idx = knn(X, 60)
    got = lisi_knn(dist, idx, batch, perplexity=20)
    want = ref_lisi(dist, idx, batch, perplexity=20)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert ilisi(X, batch, k=60, perplexity=20) == pytest.approx((np.median(want) - 1) / 2, abs=1e-6)


def test_kbet_matches_reference_loop():
    X, batch, _ = partly_mixed()
    _, idx = ref_knn(X, 30)
    for alpha in (0.01, 0.05, 0.2):
        assert kbet_acceptance(X, batch, k=30, alpha=alpha) == ref_kbet(idx, batch, alpha)


def test_silhouette_batch_matches_sklearn():
    X, batch, labels = partly_mixed()
    labels = labels.copy()
    labels[batch == 0] = np.where(labels[batch == 0] == 3, 3, labels[batch == 0])
    labels[:8] = 9  # a small extra label
    assert silhouette_batch(X, batch, labels) == pytest.approx(ref_silhouette_batch(X, batch, labels), abs=1e-6)


def test_silhouette_batch_skips_single_batch_labels():
    X, batch, labels = partly_mixed()
    labels = np.where(batch == 2, 7, labels)  # label 7: one batch only -> skipped, as scib
    assert silhouette_batch(X, batch, labels) == pytest.approx(ref_silhouette_batch(X, batch, labels), abs=1e-6)
    assert math.isnan(silhouette_batch(X, batch, batch))  # every label single-batch


def test_graph_connectivity_matches_reference():
    X, batch, labels = partly_mixed(shift=4.0)
    _, idx = ref_knn(X, 5)
    assert graph_connectivity(X, labels, k=5) == pytest.approx(ref_graph_connectivity(idx, labels), abs=1e-12)


def test_batch_probe_matches_sklearn_pipeline():
    X, batch, _ = partly_mixed(n=240)
    groups = np.arange(240) // 2  # pairs ("two sites of a well") stay together
    cv = GroupKFold(n_splits=4, shuffle=True, random_state=3)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200))
    pred = cross_val_predict(model, X, batch, groups=groups, cv=cv)
    kappa = max(0.0, balanced_accuracy_score(batch, pred, adjusted=True))
    assert batch_probe(X, batch, groups, n_splits=4, seed=3) == pytest.approx(1 - kappa, abs=1e-12)


# ----------------------------------------------------------------------------- known answers


def test_known_answers_mixed_vs_separated():
    rng = np.random.default_rng(5)
    n = 400
    mixed_batch = rng.integers(0, 4, n)
    labels = rng.integers(0, 3, n)
    Xm = rng.normal(size=(n, 8))
    groups = np.arange(n)
    # Random labels in finite neighbourhoods: E[simpson] = 1/B + (1 - 1/B) sum_j P_j^2, so the
    # median LISI of a perfectly mixed embedding sits below B (here ilisi ~ 0.8), not at 1.
    assert ilisi(Xm, mixed_batch) > 0.7
    assert kbet_acceptance(Xm, mixed_batch) > 0.85
    assert silhouette_batch(Xm, mixed_batch, labels) > 0.9
    assert graph_connectivity(Xm, labels) > 0.9
    assert batch_probe(Xm, mixed_batch, groups) > 0.85

    Xs, sep_batch, labels = separated()
    assert ilisi(Xs, sep_batch) < 1e-3
    assert kbet_acceptance(Xs, sep_batch) == 0.0
    assert silhouette_batch(Xs, sep_batch, labels) < 0.05
    # graph connectivity: each label is split over 4 islands, so its floor is ~1/B, not 0
    assert graph_connectivity(Xs, labels) < 0.3
    assert batch_probe(Xs, sep_batch, groups) == 0.0


SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def test_dose_response_label_shuffle():
    """Separated clusters; a growing (nested) share of batch labels is permuted among points.

    kBET is a test with k = 50: partly mixed neighbourhoods are still rejected, so it stays ~0
    until mixing is nearly complete; we allow a 0.02 dip for it and 0.01 for the others. Graph
    connectivity does not use batch labels, so it must not move at all.
    """
    Xs, batch, labels = separated()
    rng = np.random.default_rng(7)
    order = rng.permutation(len(batch))
    groups = np.arange(len(batch))
    rows = {key: [] for key in ("ilisi", "kbet", "silhouette_batch", "batch_probe", "graph_connectivity")}
    for share in SHARES:
        chosen = order[: int(round(share * len(batch)))]
        b = batch.copy()
        b[chosen] = b[rng.permutation(chosen)]
        rows["ilisi"].append(ilisi(Xs, b))
        rows["kbet"].append(kbet_acceptance(Xs, b))
        rows["silhouette_batch"].append(silhouette_batch(Xs, b, labels))
        rows["batch_probe"].append(batch_probe(Xs, b, groups))
        rows["graph_connectivity"].append(graph_connectivity(Xs, labels))
    for key in ("ilisi", "silhouette_batch", "batch_probe"):
        v = np.array(rows[key])
        assert np.all(np.diff(v) > 0), (key, v)
        assert v[0] < 0.05 and v[-1] > 0.7, (key, v)
    v = np.array(rows["kbet"])
    assert np.all(np.diff(v) > -0.02) and v[0] == 0.0 and v[-1] > 0.8, v
    assert len(set(rows["graph_connectivity"])) == 1


def test_dose_response_offset_removal():
    """A growing (nested) share of points loses its batch offset (joins one shared cloud):
    every score rises; graph connectivity (one label, the stratum: the shared cloud's share of the
    points once it is the largest piece) strictly."""
    rng = np.random.default_rng(8)
    n, B, d = 480, 8, 10
    batch = np.repeat(np.arange(B), n // B)
    Z = rng.normal(size=(n, d))
    order = rng.permutation(n)
    rows = []
    for share in SHARES:
        offset = 60.0 * np.eye(d)[batch]
        offset[order[: int(round(share * n))]] = 0.0
        res = batch_mixing_scores(Z + offset, batch, strata=np.zeros(n), ilisi_k=45, perplexity=15)
        rows.append([res[key] for key in ("ilisi", "kbet", "silhouette_batch", "graph_connectivity", "batch_probe", "mixing")])
    v = np.array(rows)
    assert np.all(np.diff(v, axis=0) > -0.02), v
    assert np.all(np.diff(v[:, 3]) > 0.05), v[:, 3]
    assert np.all(v[-1] - v[0] > 0.4), v


# ----------------------------------------------------------------------------- combined scores


def test_batch_mixing_scores_strata_weighting_and_skips():
    X, batch, _ = partly_mixed(n=300)
    strata = np.array(["A"] * 180 + ["B"] * 100 + ["C"] * 20)
    batch = batch.copy()
    batch[280:] = 0  # stratum C has one batch: skipped
    res = batch_mixing_scores(X, batch, strata=strata, ilisi_k=30, perplexity=10, kbet_k=20, gc_k=5)
    assert res["n_strata"] == 2 and res["n_strata_skipped"] == 1
    a, b = slice(0, 180), slice(180, 280)
    one_label = lambda s: np.zeros(s.stop - s.start)  # noqa: E731  within a stratum the label is the stratum
    want = {
        "ilisi": [ilisi(X[s], batch[s], k=30, perplexity=10) for s in (a, b)],
        "kbet": [kbet_acceptance(X[s], batch[s], k=20) for s in (a, b)],
        "silhouette_batch": [silhouette_batch(X[s], batch[s], one_label(s)) for s in (a, b)],
        "graph_connectivity": [graph_connectivity(X[s], one_label(s), k=5) for s in (a, b)],
        "batch_probe": [batch_probe(X[s], batch[s], np.arange(100 if s is b else 180)) for s in (a, b)],
    }
    for key, (va, vb) in want.items():
        assert res[key] == pytest.approx((180 * va + 100 * vb) / 280, abs=1e-12), key
    assert res["mixing"] == pytest.approx(np.mean([res[k] for k in COMPOSITE_KEYS]), abs=1e-12)
    assert all(0.0 <= res[k] <= 1.0 for k in want)


# ----------------------------------------------------------------------------- label = cell type


def replicate_islands():
    """Two cell types, as held-out RxRx1: 2 experiments each, one well per siRNA per experiment.

    Cell type A (40 wells): each experiment's 20 wells sit on 2 islands far from everything else
    (12 + 8 wells of experiment 0, 11 + 9 of experiment 1), each island a line of unit-spaced
    points, so with k = 3 the kNN graph has exactly these 4 components. siRNA i is well i of each
    experiment. Cell type B (20 wells): one line whose wells alternate between the experiments:
    one component. Returns X, batch, cell_type, sirna, the index of A's points.
    """
    step = np.ones(4) / 2.0  # unit length
    pieces, batch = [], []
    for island, (b, size) in enumerate([(0, 12), (0, 8), (1, 11), (1, 9)]):
        pieces.append(100.0 * np.eye(4)[island] + np.arange(size)[:, None] * step)
        batch += [b] * size
    pieces.append(np.arange(20)[:, None] * step - 500.0)
    batch += [0, 1] * 10
    X = np.vstack(pieces)
    cell_type = np.array(["A"] * 40 + ["B"] * 20)
    sirna = np.r_[np.arange(20), np.arange(20), 100 + np.arange(20) // 2]
    return X, np.array(batch), cell_type, sirna, np.arange(40)


SMALL_K = dict(ilisi_k=6, perplexity=2, kbet_k=5, gc_k=3)


def test_graph_connectivity_uses_the_cell_type_as_label():
    X, batch, cell_type, sirna, a = replicate_islands()
    res = batch_mixing_scores(X, batch, strata=cell_type, **SMALL_K)
    # by hand: A's largest component is the 12-well island (12 / 40); B is one line (1); weights 40, 20
    assert res["graph_connectivity"] == pytest.approx((40 * 12 / 40 + 20 * 1.0) / 60, abs=1e-12)
    # the old label, the siRNA: in A each siRNA's two wells lie on islands of different experiments,
    # never adjacent, so every siRNA scores 1/2, and the score cannot go below that
    _, idx_a = ref_knn(X[a], 3)
    assert ref_graph_connectivity(idx_a, sirna[a]) == 0.5
    assert graph_connectivity(X[a], np.zeros(40), k=3) == pytest.approx(12 / 40, abs=1e-12)


def test_silhouette_batch_uses_the_cell_type_as_label():
    X, batch, _ = partly_mixed(n=300)
    cell_type = np.array(["A"] * 180 + ["B"] * 120)
    res = batch_mixing_scores(X, batch, strata=cell_type, ilisi_k=30, perplexity=10, kbet_k=20, gc_k=5)
    # scib's scaled batch ASW with the stratum as the one label: mean over its points of 1 - |s_i|,
    # s = sklearn's silhouette of the batch assignment; strata weighted by size
    asw = {c: np.mean(1 - np.abs(silhouette_samples(X[cell_type == c], batch[cell_type == c]))) for c in "AB"}
    assert res["silhouette_batch"] == pytest.approx((180 * asw["A"] + 120 * asw["B"]) / 300, abs=1e-6)


def test_silhouette_batch_is_defined_on_replicate_pairs():
    """One well per siRNA per experiment: within siRNA every point is its own batch, so the old
    label left nothing to score (NaN); the cell type as label scores every well."""
    X, batch, cell_type, sirna, a = replicate_islands()
    assert math.isnan(silhouette_batch(X[a], batch[a], sirna[a]))
    res = batch_mixing_scores(X, batch, strata=cell_type, **SMALL_K)
    asw = [np.mean(1 - np.abs(silhouette_samples(X[cell_type == c], batch[cell_type == c]))) for c in "AB"]
    assert res["silhouette_batch"] == pytest.approx((40 * asw[0] + 20 * asw[1]) / 60, abs=1e-6)


def test_mixing_is_the_mean_of_the_composite_scores():
    assert COMPOSITE_KEYS == ("ilisi", "kbet", "graph_connectivity", "batch_probe")
    assert set(SCORE_KEYS) == {*COMPOSITE_KEYS, "silhouette_batch"}
    X, batch, _ = partly_mixed(n=150)  # one cell type, 3 batches
    n, seed, n_splits = len(X), 0, 5
    res = batch_mixing_scores(X, batch, strata=np.zeros(n), ilisi_k=30, perplexity=10, kbet_k=20, gc_k=5,
                              n_splits=n_splits, seed=seed)
    # each score from the slow references (one label: the cell type) and the sklearn probe pipeline
    dist, idx = ref_knn(X, 30)
    cv = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    pred = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)), X, batch,
                             groups=np.arange(n), cv=cv)
    want = {
        "ilisi": (np.median(ref_lisi(dist, idx, batch, perplexity=10)) - 1) / 2,
        "kbet": ref_kbet(idx[:, :20], batch, 0.05),
        "graph_connectivity": ref_graph_connectivity(idx[:, :5], np.zeros(n)),
        "batch_probe": 1 - max(0.0, balanced_accuracy_score(batch, pred, adjusted=True)),
    }
    asw = np.mean(1 - np.abs(silhouette_samples(X, batch)))
    for key, value in want.items():
        assert res[key] == pytest.approx(value, abs=1e-6), key
    assert res["mixing"] == pytest.approx(np.mean(list(want.values())), abs=1e-6)
    # silhouette is reported, not averaged in: here it would move the composite
    assert res["silhouette_batch"] == pytest.approx(asw, abs=1e-6)
    assert abs(np.mean([*want.values(), asw]) - res["mixing"]) > 0.02


def test_batch_asw_scores_a_far_batch_as_mixed_when_two_overlap():
    """The reason silhouette left the composite (scores.py): b_i is the nearest other batch only.
    Batches 0 and 1 share one cloud, batch 2 lies 50 sd away: 0 and 1 score 1 - |s| ~ 1, so the
    batch ASW is ~2/3 although batch 2 is not mixed at all; kBET rejects every neighbourhood."""
    rng = np.random.default_rng(3)
    batch = np.repeat([0, 1, 2], 30)
    X = rng.normal(size=(90, 8)) + 50.0 * (batch == 2)[:, None] * np.eye(8)[0]
    res = batch_mixing_scores(X, batch, strata=np.zeros(90), ilisi_k=20, perplexity=6, kbet_k=15, gc_k=5)
    assert 0.6 < res["silhouette_batch"] < 2 / 3 + 1e-9
    assert res["kbet"] == 0.0 and res["mixing"] < 0.4


# ----------------------------------------------------------------------------- validation


def _base():
    X, batch, labels = partly_mixed(n=60)
    return X, batch, labels


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda X, b, l: ilisi(X[:, 0], b), "X"),
        (lambda X, b, l: ilisi(X.astype(int), b), "X"),
        (lambda X, b, l: ilisi(np.where(np.arange(60)[:, None] == 3, np.nan, X), b), "X"),
        (lambda X, b, l: ilisi(X, b[:-1]), "batch"),
        (lambda X, b, l: ilisi(X, np.zeros(60)), "batch"),
        (lambda X, b, l: ilisi(X, b, k=60), "k"),
        (lambda X, b, l: ilisi(X, b, k=30, perplexity=30), "perplexity"),
        (lambda X, b, l: kbet_acceptance(X, b, k=0), "k"),
        (lambda X, b, l: kbet_acceptance(X, b, k=10, alpha=1.5), "alpha"),
        (lambda X, b, l: silhouette_batch(X, b, l[:10]), "labels"),
        (lambda X, b, l: graph_connectivity(X, l, k=2.5), "k"),
        (lambda X, b, l: batch_probe(X, b, np.arange(60) % 3), "groups"),
        (lambda X, b, l: batch_probe(X, b, np.arange(60), n_splits=1), "n_splits"),
        (lambda X, b, l: batch_mixing_scores(X, b, strata=np.arange(60) % 2, ilisi_k=45, perplexity=10), "ilisi_k"),
        (lambda X, b, l: batch_mixing_scores(X, b, strata=np.zeros(59)), "strata"),
        (lambda X, b, l: batch_mixing_scores(X, np.arange(60) % 2, strata=np.arange(60) % 2), "strata"),
    ],
)
def test_validation_errors_name_the_argument(call, name):
    X, batch, labels = _base()
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        call(X, batch, labels)


def test_the_old_positional_labels_form_fails():
    """(X, batch, labels, strata) was the old call; a siRNA passed there must not be taken silently."""
    X, batch, labels = _base()
    with pytest.raises(TypeError):
        batch_mixing_scores(X, batch, labels, np.zeros(60))


def test_thread_settings_are_restored():
    import torch
    from threadpoolctl import threadpool_info

    before = (torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()])
    X, batch, labels = partly_mixed()
    batch_mixing_scores(X, batch, strata=np.zeros(len(X)), ilisi_k=30, perplexity=10)
    assert (torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()]) == before


@pytest.mark.parametrize("n, d", [(58, 128), (200, 16)], ids=["fewer_wells_than_dims", "more_wells"])
def test_probe_solver_finds_sklearns_optimum(n, d):
    """The two-batch probe's Newton solve is sklearn's LogisticRegression (C = 1, unpenalised
    intercept) run to convergence: same coefficients to 1e-5, same decisions."""
    from rxsweep.metrics.mixing.probe import _binary_logistic

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, d))
    positive = rng.random(n) < 0.4
    X[positive] += 0.4
    w, b = _binary_logistic(X, positive)
    reference = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(X, positive)
    np.testing.assert_allclose(w, reference.coef_[0], atol=1e-5)
    assert b == pytest.approx(reference.intercept_[0], abs=1e-5)
    np.testing.assert_array_equal(X @ w + b > 0, reference.predict(X))


def test_copies_of_a_unit_are_not_each_others_neighbours():
    """A bootstrap resample repeats wells: with ``units``, a copy is never its original's
    neighbour, and the scores equal those computed by hand from a kNN that skips same-unit points."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(40, 5)) + np.repeat([[0.0] * 5, [1.5] * 5], 20, axis=0)
    batch_of = np.repeat([0, 1], 20)
    rows = rng.integers(0, 40, size=40)  # a resample with repeats
    X, batch = base[rows], batch_of[rows]
    from rxsweep.metrics.mixing import kbet_knn
    from rxsweep.metrics.mixing.scores import _knn_of_units

    dist, idx = _knn_of_units(X, rows, 6)
    d2 = ((X[:, None] - X[None]) ** 2).sum(-1)
    d2[rows[:, None] == rows[None, :]] = np.inf  # self and copies excluded
    expected = np.argsort(d2, axis=1, kind="stable")[:, :6]
    np.testing.assert_array_equal(idx, expected)
    assert not (rows[idx] == rows[:, None]).any()
    got = batch_mixing_scores(X, batch, strata=np.zeros(40), units=rows, ilisi_k=6, perplexity=2.0, kbet_k=6,
                              gc_k=6, n_splits=2, keys=("kbet",))
    assert got["kbet"] == pytest.approx(kbet_knn(expected, batch, 0.05))
    assert math.isnan(got["ilisi"]) and got["mixing"] == got["kbet"]  # only the keys asked for
