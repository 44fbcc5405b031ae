"""kBET acceptance rate (Büttner et al. 2019, Nat. Methods 16:43).

For point i with k nearest neighbours (self excluded), observed batch counts o_ib and expected
counts e_b = k * f_b, where f_b is the share of batch b among all n points:

    chi2_i = sum_b (o_ib - e_b)^2 / e_b,      p_i = P(Chi2_{B-1} >= chi2_i)
    kbet   = (1/n) sum_i [p_i >= alpha]       in [0, 1], 1 = neighbourhoods look like the whole

What we follow: Pearson's chi-squared test with B - 1 degrees of freedom against the global batch
frequencies, every point tested, acceptance = share of p >= alpha, as scib-metrics' ``kbet``
(itself after Pegasus). Differences from the R kBET package, stated so numbers are read right:
no 10% subsample of test points, no adaptive k (R's ``k0`` heuristic; scib's ``kBET`` per label
also adapts k0 = min(70, max(10, mean batch size / 4)) and works on a diffusion graph), and the
point itself is not counted among its k neighbours (scib-metrics counts it when the neighbour
search returns it). kBET is a test, so it saturates: for k = 50 it rejects a neighbourhood that
is only partly mixed, and the rate stays near 0 until mixing is nearly complete.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import chi2

from ..checks import check_batches, check_embedding, check_k, check_labels, check_open_unit
from .neighbors import knn

__all__ = ["kbet_acceptance", "kbet_knn"]


def kbet_knn(knn_idx: np.ndarray, batch_codes: np.ndarray, alpha: float = 0.05) -> float:
    """kBET acceptance rate from (n, k) neighbour indices and (n,) batch codes 0..B-1 (B >= 2)."""
    alpha = check_open_unit(alpha, "alpha")
    knn_idx = np.asarray(knn_idx)
    codes = np.asarray(batch_codes)
    n_batches = check_batches(codes)
    n, k = knn_idx.shape
    freq = np.bincount(codes, minlength=n_batches) / codes.shape[0]
    expected = k * freq  # every batch occurs, so > 0
    flat = (np.arange(n)[:, None] * n_batches + codes[knn_idx]).ravel()
    observed = np.bincount(flat, minlength=n * n_batches).reshape(n, n_batches)
    stat = (((observed - expected) ** 2) / expected).sum(axis=1)
    p = chi2.sf(stat, df=n_batches - 1)
    return float(np.mean(p >= alpha))


def kbet_acceptance(X: np.ndarray, batch: np.ndarray, k: int = 50, alpha: float = 0.05) -> float:
    """kBET acceptance rate of ``batch`` in the embedding ``X`` (formula in the module docstring).

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch labels, at least 2 distinct.
        k: neighbours per point (self excluded), ``k < n``.
        alpha: significance level of each point's test, in (0, 1).

    Returns:
        Float in [0, 1]: share of points whose neighbourhood batch counts are not rejected.
    """
    X = check_embedding(X)
    codes = check_labels(batch, X.shape[0], "batch")
    check_batches(codes)
    k = check_k(k, X.shape[0])
    check_open_unit(alpha, "alpha")
    _, idx = knn(X, k)
    return kbet_knn(idx, codes, alpha)
