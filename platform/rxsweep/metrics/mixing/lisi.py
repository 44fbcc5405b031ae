"""iLISI: integration Local Inverse Simpson's Index (Korsunsky et al. 2019, Nat. Methods 16:1289).

For point i with k nearest neighbours j (Euclidean distances D_ij, the point itself excluded):

    P_ij(beta) = exp(-beta D_ij) / sum_j' exp(-beta D_ij')          Gaussian-kernel weights
    H_i(beta)  = -sum_j P_ij log P_ij                               (nats)
    beta_i     : bisection until |H_i(beta_i) - log(perplexity)| <= tol (at most 50 steps)
    simpson_i  = sum_b (sum_{j: batch_j = b} P_ij)^2,   LISI_i = 1 / simpson_i   in [1, B]
    ilisi      = (median_i LISI_i - 1) / (B - 1)                    in [0, 1], 1 = well mixed

What we follow, checked against the reference code:
- Distances are the plain (not squared) Euclidean kNN distances, as in Harmony's R ``lisi``
  (``RANN::nn2`` distances into ``compute_simpson_index``), harmonypy and scib-metrics
  (``NeighborsResults.distances``). (t-SNE uses squared distances; LISI does not.)
- Bisection exactly as there: beta starts at 1; if H > log(perplexity) beta doubles (or moves half
  way to the upper bracket), else halves (or moves half way to the lower bracket); it stops when
  |H - log U| <= tol = 1e-5 or after 50 steps.
- Median over points, then the scib scaling (median - 1) / (B - 1) (``scib.metrics.ilisi_graph``,
  ``scib_metrics.ilisi_knn``), B = number of batches present in ``batch``.
- Neighbours: k points other than i. Harmony/harmonypy ask RANN/sklearn for ``3 * perplexity``
  neighbours *including* the point and drop it, i.e. 89 for perplexity 30; scib-metrics masks the
  self edge out of its k. ``k=89`` reproduces Harmony exactly; the default ``k=90`` follows this
  project's convention (k other points) and differs from it by one neighbour.
- Numerics: weights use D_ij - min_j D_ij (entropy and P are shift-invariant), so exp never
  underflows to an all-zero row; the references then return simpson = -1 (LISI = -1) for such a
  point, which cannot happen here. Otherwise results match the references to rounding.
- scib's own ``ilisi_graph`` computes LISI on shortest-path distances of a 15-NN graph; we use the
  embedding's kNN distances (Harmony / scib-metrics), which is what one wants for an embedding.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import check_batches, check_embedding, check_k, check_labels
from ._parallel import map_blocks
from .neighbors import knn

__all__ = ["ilisi", "ilisi_knn", "lisi_knn"]

_MAX_TRIES = 50


def _entropy_and_weights(Ds: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ds (r, k) shifted distances (row min 0), beta (r,) -> H (r,), P (r, k) normalised."""
    P = np.exp(-Ds * beta[:, None])
    sumP = P.sum(axis=1)  # >= 1: the nearest neighbour has weight exp(0)
    H = np.log(sumP) + beta * (Ds * P).sum(axis=1) / sumP
    P /= sumP[:, None]
    return H, P


def _calibrated_weights(D: np.ndarray, perplexity: float, tol: float) -> np.ndarray:
    """Per-row bisection on beta (vectorised over rows, same steps as the scalar reference)."""
    Ds = D - D.min(axis=1, keepdims=True)
    n = Ds.shape[0]
    logU = math.log(perplexity)
    beta = np.ones(n)
    betamin = np.full(n, -np.inf)
    betamax = np.full(n, np.inf)
    H, P = _entropy_and_weights(Ds, beta)
    Hdiff = H - logU
    active = np.flatnonzero(np.abs(Hdiff) > tol)
    for _ in range(_MAX_TRIES):
        if active.size == 0:
            break
        b, lo, hi, up = beta[active], betamin[active], betamax[active], Hdiff[active] > 0
        # H too high (too flat) -> raise beta; too low -> lower it.
        new_lo = np.where(up, b, lo)
        new_hi = np.where(up, hi, b)
        new_b = np.where(
            up,
            np.where(np.isinf(hi), b * 2.0, (b + hi) / 2.0),
            np.where(np.isinf(lo), b / 2.0, (b + lo) / 2.0),
        )
        beta[active], betamin[active], betamax[active] = new_b, new_lo, new_hi
        H_a, P_a = _entropy_and_weights(Ds[active], new_b)
        P[active] = P_a
        Hdiff[active] = H_a - logU
        active = active[np.abs(Hdiff[active]) > tol]
    return P


def lisi_knn(
    knn_dist: np.ndarray,
    knn_idx: np.ndarray,
    labels: np.ndarray,
    perplexity: float = 30.0,
    tol: float = 1e-5,
) -> np.ndarray:
    """Per-point LISI from a precomputed kNN.

    Args:
        knn_dist: (n, k) Euclidean distances to each point's k neighbours (self excluded).
        knn_idx: (n, k) neighbour indices into ``labels``.
        labels: (n,) integer codes 0..C-1.
        perplexity: effective neighbourhood size, ``0 < perplexity < k``.
        tol: bisection tolerance on the entropy (nats).

    Returns:
        (n,) LISI values in [1, C].
    """
    knn_dist = np.asarray(knn_dist, dtype=np.float64)
    knn_idx = np.asarray(knn_idx)
    labels = np.asarray(labels)
    if knn_dist.ndim != 2 or knn_dist.shape != knn_idx.shape:
        raise ValueError(f"knn_dist must be 2-D and match knn_idx; got {knn_dist.shape} vs {knn_idx.shape}")
    n, k = knn_dist.shape
    if not (isinstance(perplexity, (int, float)) and 0 < perplexity < k):
        raise ValueError(f"perplexity must be a number in (0, k={k}); got {perplexity!r}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol!r}")
    # Rows are independent; numpy releases the GIL in exp / sums, so chunks run on threads.
    chunks = [slice(s, min(n, s + 4096)) for s in range(0, n, 4096)]
    P = np.concatenate(map_blocks(lambda c: _calibrated_weights(knn_dist[c], float(perplexity), float(tol)), chunks))
    n_labels = int(labels.max()) + 1
    flat = (np.arange(n)[:, None] * n_labels + labels[knn_idx]).ravel()
    per_label = np.bincount(flat, weights=P.ravel(), minlength=n * n_labels).reshape(n, n_labels)
    simpson = np.einsum("ij,ij->i", per_label, per_label)
    return 1.0 / simpson


def ilisi_knn(knn_dist: np.ndarray, knn_idx: np.ndarray, batch_codes: np.ndarray, perplexity: float = 30.0) -> float:
    """Scaled iLISI in [0, 1] from a precomputed kNN; ``batch_codes`` are codes 0..B-1, B >= 2."""
    n_batches = check_batches(np.asarray(batch_codes))
    lisi = lisi_knn(knn_dist, knn_idx, batch_codes, perplexity)
    return float((np.median(lisi) - 1.0) / (n_batches - 1))


def ilisi(X: np.ndarray, batch: np.ndarray, k: int = 90, perplexity: float = 30.0) -> float:
    """Scaled iLISI of ``batch`` in the embedding ``X`` (see the module docstring for the formula).

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch labels (any sortable values), at least 2 distinct.
        k: neighbours per point (self excluded), ``k < n``; Harmony uses 3 * perplexity.
        perplexity: effective neighbourhood size of the Gaussian weights, ``0 < perplexity < k``.

    Returns:
        Float in [0, 1]: 0 = every neighbourhood holds one batch, 1 = neighbourhoods hold all B
        batches in equal (kernel-weighted) shares, at the median point.
    """
    X = check_embedding(X)
    codes = check_labels(batch, X.shape[0], "batch")
    check_batches(codes)
    k = check_k(k, X.shape[0])
    if not (isinstance(perplexity, (int, float)) and not isinstance(perplexity, bool) and 0 < perplexity < k):
        raise ValueError(f"perplexity must be a number in (0, k={k}); got {perplexity!r}")
    dist, idx = knn(X, k)
    return ilisi_knn(dist, idx, codes, perplexity)
