"""All batch-mixing scores of an embedding, within strata, in one call.

Experiments of different cell types are not expected to mix, so every score is computed within a
stratum (e.g. cell type) s with n_s points and B_s >= 2 batches, then averaged over strata with
weights n_s (a stratum counts as much as it has points; a stratum whose score is NaN, e.g. no label
with 2 batches for the silhouette, drops out of that score's average):

    score = sum_s n_s score_s / sum_s n_s          for score in ilisi, kbet, silhouette_batch,
                                                   graph_connectivity, batch_probe
    mixing = mean of those five                    (NaN scores skipped)

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

__all__ = ["batch_mixing_scores", "SCORE_KEYS"]

SCORE_KEYS = ("ilisi", "kbet", "silhouette_batch", "graph_connectivity", "batch_probe")


def _timed(timings: dict[str, float] | None, key: str, fn, *args):
    """Call ``fn(*args)``; add its wall seconds to ``timings[key]`` when timings is a dict."""
    t0 = time.perf_counter()
    out = fn(*args)
    if timings is not None:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
    return out


def batch_mixing_scores(
    X: np.ndarray,
    batch: np.ndarray,
    labels: np.ndarray,
    strata: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    ilisi_k: int = 90,
    perplexity: float = 30.0,
    kbet_k: int = 50,
    alpha: float = 0.05,
    gc_k: int = 15,
    n_splits: int = 5,
    seed: int = 0,
    timings: dict[str, float] | None = None,
) -> dict[str, float]:
    """Batch-mixing scores within strata, size-weighted over strata (see the module docstring).

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch (experiment) labels.
        labels: (n,) biological labels used by silhouette_batch and graph_connectivity.
        strata: (n,) stratum labels (e.g. cell type); scores are computed within each.
        groups: (n,) CV groups for the batch probe (e.g. well ids); None = every point its own.
        ilisi_k, perplexity: iLISI neighbours and perplexity. kbet_k, alpha: kBET.
        gc_k: graph-connectivity neighbours. n_splits, seed: the batch probe's GroupKFold.
        timings: if a dict is given, wall seconds per step (``knn`` and each score) are added to
            it, summed over strata; the scores do not depend on it (used by the benchmark).

    Returns:
        ``{ilisi, kbet, silhouette_batch, graph_connectivity, batch_probe, mixing}`` floats in
        [0, 1] (1 = well mixed), plus ``n_strata`` (scored) and ``n_strata_skipped`` (< 2 batches).
    """
    X = check_embedding(X)
    n = X.shape[0]
    b_codes = check_labels(batch, n, "batch")
    l_codes = check_labels(labels, n, "labels")
    s_codes = check_labels(strata, n, "strata")
    g_codes = np.arange(n) if groups is None else check_labels(groups, n, "groups")
    check_open_unit(alpha, "alpha")
    if not (isinstance(perplexity, (int, float)) and not isinstance(perplexity, bool) and 0 < perplexity < ilisi_k):
        raise ValueError(f"perplexity must be a number in (0, ilisi_k={ilisi_k}); got {perplexity!r}")

    stratum_names = np.unique(np.asarray(strata))
    scored, skipped = [], 0
    for s in range(int(s_codes.max()) + 1):
        members = np.flatnonzero(s_codes == s)
        if np.unique(b_codes[members]).size < 2:
            skipped += 1
            continue
        for name, k in (("ilisi_k", ilisi_k), ("kbet_k", kbet_k), ("gc_k", gc_k)):
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

    k_max = max(ilisi_k, kbet_k, gc_k)
    per_stratum: dict[str, list[float]] = {key: [] for key in SCORE_KEYS}
    sizes = []
    for members in scored:
        Xs = X[members]
        _, bs = np.unique(b_codes[members], return_inverse=True)
        _, ls = np.unique(l_codes[members], return_inverse=True)
        bs, ls = bs.reshape(-1), ls.reshape(-1)
        dist, idx = _timed(timings, "knn", knn, Xs, k_max)
        for key, fn, args in (
            ("ilisi", ilisi_knn, (dist[:, :ilisi_k], idx[:, :ilisi_k], bs, perplexity)),
            ("kbet", kbet_knn, (idx[:, :kbet_k], bs, alpha)),
            ("silhouette_batch", silhouette_batch, (Xs, bs, ls)),
            ("graph_connectivity", graph_connectivity_knn, (idx[:, :gc_k], ls)),
            ("batch_probe", batch_probe, (Xs, bs, g_codes[members], n_splits, seed)),
        ):
            per_stratum[key].append(_timed(timings, key, fn, *args))
        sizes.append(members.size)

    w = np.asarray(sizes, dtype=np.float64)
    out: dict[str, float] = {}
    for key in SCORE_KEYS:
        v = np.asarray(per_stratum[key])
        ok = ~np.isnan(v)
        out[key] = float(np.sum(w[ok] * v[ok]) / np.sum(w[ok])) if ok.any() else float("nan")
    finite = [out[key] for key in SCORE_KEYS if not np.isnan(out[key])]
    out["mixing"] = float(np.mean(finite)) if finite else float("nan")
    out["n_strata"] = len(scored)
    out["n_strata_skipped"] = skipped
    return out
