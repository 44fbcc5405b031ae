"""Benchmark of rxsweep.metrics.mixing: all scores on 50,000 x 128 with 20 batches, one JSON line.

Workload (defaults): a synthetic float32 embedding of n = 50,000 points in 128 dims: 50 label
centres (biology; they shape the embedding only, the scores' label is the stratum), 20 batches
with offsets of about half the label spread (a partial batch effect), points in pairs sharing a
group id (two sites of a well). By default ONE stratum: every point in one kNN problem (50,000^2
pairs), the worst case; ``--strata 4`` splits points into 4 strata with 5 batches each (RxRx1-like
cell types; each stratum is 16x cheaper for the kNN and the silhouette).
Ours = ``batch_mixing_scores`` with its per-step ``timings``.

Baseline, run in the same process on the same data, stated honestly:
- kNN: sklearn ``NearestNeighbors(n_neighbors=k + 1)`` with its default algorithm ('auto', which
  picks brute force for 128 dims: float64 Gram trick + argpartition, chunked), then the self
  column dropped; run in full, per stratum. This is what one would write without our helper.
- iLISI: the per-point Python loop of scib's ``compute_simpson_index`` (also Harmony's algorithm)
  on the same kNN, timed on a random 2,000-point subsample and scaled linearly to all points
  (the loop is O(n); running it on 50,000 points would take minutes).
- silhouette_batch: ``sklearn.metrics.silhouette_samples`` of batch on each stratum, in full (the
  stratum, i.e. the cell type, is the label of the batch silhouette, as in scib). This is the
  O(n_s^2 d) step: with one stratum, every pair of the 50,000 points.
- kBET, graph connectivity and the probe have no separate naive form here; the baseline is
  charged the same seconds as ours for them, so they do not inflate the ratio.
``ratio`` = baseline total seconds / our total seconds (> 1: we are faster); ``ratio_knn`` is the
same for the kNN alone. Cross-checks are reported too: the share of rows whose kNN index lists
agree exactly with sklearn's, and the largest |LISI| difference on the subsample.

Run: ``python bench/mixing_metrics.py [--n 50000] [--dims 128] [--batches 20] [--strata 1]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
from sklearn.metrics import silhouette_samples
from sklearn.neighbors import NearestNeighbors

from rxsweep.metrics.mixing import batch_mixing_scores, lisi_knn


def make_embedding(n: int, dims: int, n_batches: int, n_strata: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 50, n)
    batch = rng.integers(0, n_batches, n)
    strata = batch % n_strata  # batches nested in strata, as experiments in cell types
    centres = rng.normal(size=(50, dims)) * 1.0
    offsets = rng.normal(size=(n_batches, dims)) * 0.1
    X = centres[labels] + offsets[batch] + rng.normal(size=(n, dims)) * 0.7
    groups = np.arange(n) // 2  # two sites a well
    return X.astype(np.float32), batch, labels, strata, groups


def lisi_reference_loop(D: np.ndarray, idx: np.ndarray, labels: np.ndarray, perplexity: float) -> np.ndarray:
    """scib / Harmony compute_simpson_index, one point at a time (the naive baseline)."""
    n_labels = int(labels.max()) + 1
    logU = math.log(perplexity)
    out = np.empty(len(D))
    for i in range(len(D)):
        beta, betamin, betamax, tries = 1.0, -np.inf, np.inf, 0
        P = np.exp(-D[i] * beta)
        s = P.sum()
        H = math.log(s) + beta * np.sum(D[i] * P) / s
        P /= s
        while abs(H - logU) > 1e-5 and tries < 50:
            if H - logU > 0:
                betamin = beta
                beta = beta * 2 if betamax == np.inf else (beta + betamax) / 2
            else:
                betamax = beta
                beta = beta / 2 if betamin == -np.inf else (beta + betamin) / 2
            P = np.exp(-D[i] * beta)
            s = P.sum()
            H = math.log(s) + beta * np.sum(D[i] * P) / s
            P /= s
            tries += 1
        sumP = np.bincount(labels[idx[i]], weights=P, minlength=n_labels)
        out[i] = 1.0 / np.dot(sumP, sumP)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--strata", type=int, default=1)
    ap.add_argument("--lisi-subsample", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    X, batch, _, strata, groups = make_embedding(args.n, args.dims, args.batches, args.strata, args.seed)
    ilisi_k, kbet_k, gc_k, perplexity = 90, 50, 15, 30.0

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    scores = batch_mixing_scores(X, batch, strata=strata, groups=groups, timings=timings)
    ours_total = time.perf_counter() - t0

    # ---- baseline, same data, same process
    rng = np.random.default_rng(args.seed + 1)
    base = {"knn": 0.0, "ilisi": 0.0, "silhouette_batch": 0.0}
    agree_rows, max_lisi_diff = 0, 0.0
    from rxsweep.metrics.mixing import knn  # our kNN, for the cross-checks only (not timed)

    k_max = max(ilisi_k, kbet_k, gc_k)
    for s in np.unique(strata):
        m = np.flatnonzero(strata == s)
        Xs = X[m]
        t = time.perf_counter()
        nn = NearestNeighbors(n_neighbors=k_max + 1).fit(Xs)
        sk_dist, sk_idx = nn.kneighbors(Xs)
        base["knn"] += time.perf_counter() - t
        dist, idx = knn(Xs, k_max)
        # sklearn's first column is usually the point itself; compare the rest as sets.
        sk_sets = [set(r) - {i} for i, r in enumerate(sk_idx.tolist())]
        agree_rows += sum(len(a & set(b)) >= k_max for a, b in zip(sk_sets, idx.tolist()))

        _, bs = np.unique(batch[m], return_inverse=True)
        sub = rng.choice(m.size, size=min(args.lisi_subsample, m.size), replace=False)
        t = time.perf_counter()
        ref = lisi_reference_loop(dist[sub, :ilisi_k], idx[sub, :ilisi_k], bs, perplexity)
        base["ilisi"] += (time.perf_counter() - t) * m.size / sub.size
        ours = lisi_knn(dist[sub, :ilisi_k], idx[sub, :ilisi_k], bs, perplexity)
        max_lisi_diff = max(max_lisi_diff, float(np.abs(ours - ref).max()))

        t = time.perf_counter()
        silhouette_samples(Xs, bs)  # one label a stratum, as batch_mixing_scores
        base["silhouette_batch"] += time.perf_counter() - t

    shared = sum(v for k, v in timings.items() if k not in base)
    base_total = sum(base.values()) + shared
    ours_same = sum(timings[k] for k in base)
    print(
        json.dumps(
            {
                "bench": "mixing_metrics",
                "n": args.n,
                "dims": args.dims,
                "batches": args.batches,
                "strata": args.strata,
                "scores": {k: round(v, 4) if isinstance(v, float) else v for k, v in scores.items()},
                "seconds": {k: round(v, 2) for k, v in timings.items()},
                "total_s": round(ours_total, 2),
                "baseline_seconds": {k: round(v, 2) for k, v in base.items()},
                "baseline_total_s": round(base_total, 2),
                "ratio": round(base_total / ours_total, 2),
                "ratio_knn": round(base["knn"] / timings["knn"], 2),
                "ratio_replaced_steps": round(sum(base.values()) / ours_same, 2),
                "knn_rows_equal_to_sklearn": round(agree_rows / args.n, 5),
                "lisi_max_abs_diff_vs_loop": max_lisi_diff,
                "threads": torch.get_num_threads(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
