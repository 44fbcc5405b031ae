"""All batch-mixing scores of an embedding, within strata, in one call.

Experiments of different cell types are not expected to mix, so every score is computed within a
stratum s (the cell type) with n_s points and B_s >= 2 batches, then averaged over strata with
weights n_s (a stratum counts as much as it has points; a stratum whose score is NaN, e.g. a
silhouette with every point in its own batch, drops out of that score's average):

    score = sum_s n_s score_s / sum_s n_s          for score in SCORE_KEYS
    mixing = mean of the COMPOSITE_KEYS scores     (NaN scores skipped)

    SCORE_KEYS     = ilisi, kbet, silhouette_batch, graph_connectivity, batch_probe  (all reported)
    COMPOSITE_KEYS = ilisi, kbet, graph_connectivity, batch_probe                    (the composite)

The label of the label-aware scores is the cell type, as in scib and scib-metrics
(``silhouette_batch(adata, batch_key, label_key=<cell type>)``, ``graph_connectivity(adata,
label_key=<cell type>)``). Within one stratum the label is the stratum itself, so:

    silhouette_batch_s   = mean over the stratum's points of 1 - |s_i|, s_i the silhouette of the
                           batch assignment on the stratum (silhouette.py, scib's scale=True)
    graph_connectivity_s = share of the stratum's points in the largest connected component of
                           the stratum's kNN graph (graph_connectivity.py)

Why not the siRNA: on well profiles a treatment siRNA has one well per experiment, so a batch
silhouette within siRNA is undefined for every treatment (each point its own batch; only controls
would count) and graph connectivity within siRNA only asks whether the replicate wells are
adjacent (with two experiments it cannot score below 0.5). So the API has no labels argument:
the stratum is the label, and ``strata`` is keyword-only, so a call in the old positional form
``(X, batch, labels, strata)`` fails instead of silently treating the siRNA as the stratum.

Why silhouette_batch is reported but left out of ``mixing``: Rautenstrauch & Ohler,
"Shortcomings of silhouette in single-cell integration benchmarking", Nat Biotechnol 2025
(doi:10.1038/s41587-025-02743-4), show on simulated and real integrations that silhouette-based
scores do not reliably measure batch removal. Silhouette assumes compact, spherical clusters,
which groups defined by external labels (batch or cell type) need not form; and b_i looks only at
the *nearest* other batch, so batch structure that remains when batches are partly integrated or
nested is missed. An illustration from the formula (tested in tests/test_mixing.py): of three
batches where two overlap and the third lies far away, the overlapping two score 1 - |s| ~ 1,
so the stratum's batch ASW is ~2/3 although one batch is not mixed at all. The composite keeps
the neighbourhood scores (iLISI, kBET, graph connectivity) and the batch probe, which do not rest
on silhouette's cluster-shape assumption (they have limits of their own, e.g. graph
connectivity's floor of about 1/B for B separated batches).

Strata with fewer than 2 batches are skipped and counted in ``n_strata_skipped``. One exact kNN
with k = max(ilisi_k, kbet_k, gc_k) is computed per stratum and its prefixes reused (exact rows are
ordered by (distance, index), so a prefix is the exact kNN for the smaller k). Every k must be
smaller than each scored stratum's size; no k is shrunk (the reference implementations do not
shrink these either), the call fails instead, naming the argument.
"""

from __future__ import annotations

import time

import numpy as np

from ..checks import check_embedding, check_k, check_labels, check_open_unit
from .graph_connectivity import graph_connectivity_knn
from .kbet import kbet_knn
from .lisi import ilisi_knn
from .neighbors import knn
from .probe import batch_probe
from .silhouette import silhouette_batch

__all__ = ["COMPOSITE_KEYS", "SCORE_KEYS", "batch_mixing_scores"]

#: Every score batch_mixing_scores reports (and the ranking shows as ``mixing/<key>``).
SCORE_KEYS = ("ilisi", "kbet", "silhouette_batch", "graph_connectivity", "batch_probe")
#: The scores whose mean is ``mixing``: silhouette_batch is reported but left out (module doc).
COMPOSITE_KEYS = ("ilisi", "kbet", "graph_connectivity", "batch_probe")


def _timed(timings: dict[str, float] | None, key: str, fn, *args):
    """Call ``fn(*args)``; add its wall seconds to ``timings[key]`` when timings is a dict."""
    t0 = time.perf_counter()
    out = fn(*args)
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return out


def _check_strata(b_codes, s_codes, g_codes, stratum_names, ks, n_splits) -> tuple[list[np.ndarray], int]:
    """Point indices of each stratum with >= 2 batches, and the number skipped (< 2 batches).

    Every k must fit each scored stratum and the probe needs n_splits groups in each; the errors
    name the argument and the stratum."""
    scored, skipped = [], 0
    for s in range(int(s_codes.max()) + 1):
        members = np.flatnonzero(s_codes == s)
        if np.unique(b_codes[members]).size < 2:
            skipped += 1
            continue
        for name, k in ks.items():
            try:
                check_k(k, members.size, name)
            except ValueError as e:
                raise ValueError(f"{e} in stratum {stratum_names[s]!r} of strata") from None
        n_groups = np.unique(g_codes[members]).size
        if n_groups < n_splits:
            raise ValueError(
                f"groups has {n_groups} distinct values in stratum {stratum_names[s]!r}, "
                f"fewer than n_splits={n_splits}"
            )
        scored.append(members)
    if not scored:
        raise ValueError("strata: no stratum holds at least 2 batches; nothing to score")
    return scored, skipped


def _weighted_means(per_stratum: dict[str, list[float]], sizes: list[int]) -> dict[str, float]:
    """Size-weighted mean over strata of each score, NaN strata left out; NaN if none is left."""
    w = np.asarray(sizes, dtype=np.float64)
    out = {}
    for key, values in per_stratum.items():
        v = np.asarray(values)
        ok = ~np.isnan(v)
        out[key] = float(np.sum(w[ok] * v[ok]) / np.sum(w[ok])) if ok.any() else float("nan")
    return out


def _knn_of_units(X: np.ndarray, units: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """knn(X, k) where a point's copies (same unit) are not its neighbours: the exact kNN with
    room for them, then each row without its own unit's points, first k kept."""
    _, codes, counts = np.unique(units, return_inverse=True, return_counts=True)
    extra = int(counts.max()) - 1
    if extra == 0:
        return knn(X, k)
    check_k(k + extra, X.shape[0], "k plus the most copies of one point")
    dist, idx = knn(X, k + extra)
    keep = codes.reshape(-1)[idx] != codes.reshape(-1)[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept neighbours first, in kNN order
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)


def _composite(scores: dict[str, float]) -> float:
    """``mixing``: the mean of the finite COMPOSITE_KEYS scores (NaN when none is finite)."""
    finite = [scores[key] for key in COMPOSITE_KEYS if not np.isnan(scores[key])]
    return float(np.mean(finite)) if finite else float("nan")


def batch_mixing_scores(
    X: np.ndarray,
    batch: np.ndarray,
    *,
    strata: np.ndarray,
    groups: np.ndarray | None = None,
    ilisi_k: int = 90,
    perplexity: float = 30.0,
    kbet_k: int = 50,
    alpha: float = 0.05,
    gc_k: int = 15,
    n_splits: int = 5,
    seed: int = 0,
    units: np.ndarray | None = None,
    keys: tuple[str, ...] = SCORE_KEYS,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Batch-mixing scores within strata, size-weighted over strata (see the module docstring).

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch (experiment) labels.
        strata: (n,) cell types, keyword-only. Scores are computed within each, and the cell type
            is the label of silhouette_batch and graph_connectivity (as scib); there is no other
            label argument.
        groups: (n,) CV groups for the batch probe (e.g. well ids); None = every point its own.
        ilisi_k, perplexity: iLISI neighbours and perplexity. kbet_k, alpha: kBET.
        gc_k: graph-connectivity neighbours. n_splits, seed: the batch probe's GroupKFold.
        units: (n,) for a bootstrap resample with repeated rows: points with the same value are
            copies of one well. A copy is never its original's neighbour (at distance 0, from the
            same batch, it would read as a batch effect), and copies stay in one probe fold (the
            probe's groups become the units). None = every point its own unit.
        keys: the scores to compute (a subset of SCORE_KEYS; the others come back NaN), e.g.
            COMPOSITE_KEYS where only ``mixing`` is needed.
        timings: if a dict is given, wall seconds per step (``knn`` and each score) are added to
            it, summed over strata; the scores do not depend on it (used by the benchmark).

    Returns:
        Each of SCORE_KEYS and ``mixing`` (the mean of COMPOSITE_KEYS): floats in [0, 1]
        (1 = well mixed), plus ``n_strata`` (scored) and ``n_strata_skipped`` (< 2 batches).
    """
    X = check_embedding(X)
    n = X.shape[0]
    b_codes = check_labels(batch, n, "batch")
    s_codes = check_labels(strata, n, "strata")
    u_codes = None if units is None else check_labels(units, n, "units")
    if u_codes is not None:
        g_codes = u_codes  # copies of a well must not sit on both sides of a probe's fold
    else:
        g_codes = np.arange(n) if groups is None else check_labels(groups, n, "groups")
    unknown = set(keys) - set(SCORE_KEYS)
    if unknown:
        raise ValueError(f"keys {sorted(unknown)} are not scores; known: {list(SCORE_KEYS)}")
    check_open_unit(alpha, "alpha")
    if not (isinstance(perplexity, (int, float)) and not isinstance(perplexity, bool) and 0 < perplexity < ilisi_k):
        raise ValueError(f"perplexity must be a number in (0, ilisi_k={ilisi_k}); got {perplexity!r}")
    scored, skipped = _check_strata(b_codes, s_codes, g_codes, np.unique(np.asarray(strata)),
                                    {"ilisi_k": ilisi_k, "kbet_k": kbet_k, "gc_k": gc_k}, n_splits)

    k_max = max(ilisi_k, kbet_k, gc_k)
    per_stratum: dict[str, list[float]] = {key: [] for key in SCORE_KEYS}
    for members in scored:
        Xs = X[members]
        _, bs = np.unique(b_codes[members], return_inverse=True)
        bs = bs.reshape(-1)
        label = np.zeros(members.size, dtype=np.int64)  # within a stratum the label is the stratum
        if u_codes is None:
            dist, idx = _timed(timings, "knn", knn, Xs, k_max)
        else:
            dist, idx = _timed(timings, "knn", _knn_of_units, Xs, u_codes[members], k_max)
        for key, fn, args in (
            ("ilisi", ilisi_knn, (dist[:, :ilisi_k], idx[:, :ilisi_k], bs, perplexity)),
            ("kbet", kbet_knn, (idx[:, :kbet_k], bs, alpha)),
            ("silhouette_batch", silhouette_batch, (Xs, bs, label)),
            ("graph_connectivity", graph_connectivity_knn, (idx[:, :gc_k], label)),
            ("batch_probe", batch_probe, (Xs, bs, g_codes[members], n_splits, seed)),
        ):
            per_stratum[key].append(_timed(timings, key, fn, *args) if key in keys else float("nan"))

    out: dict[str, float] = _weighted_means(per_stratum, [m.size for m in scored])
    out["mixing"] = _composite(out)
    out["n_strata"] = len(scored)
    out["n_strata_skipped"] = skipped
    return out
