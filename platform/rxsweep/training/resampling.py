"""Adaptive resampling (AR) weights: draw sites that are rare in the embedding more often.

Source: "Adaptive Resampling For Improved Cellular Representation Learning In Imbalanced
Single-cell Datasets", whose ``calculate_resampling_weights`` follows the DB-VAE debiasing of
Amini et al. 2019, "Uncovering and Mitigating Algorithmic Bias through Learned Latent Structure".
For embeddings z of shape (N, D), in each dimension d:

    h_d        = np.histogram(z[:, d], bins, density=True)   equal-width bins over [min, max]
                 (a constant dimension: [x - 0.5, x + 0.5]); the outer edges are then opened
    s_d        = (h_d + smoothing) / sum_k (h_dk + smoothing)           smoothed, sums to 1
    p_id       = (1 / s_d[bin of z_id]) / sum_j (1 / s_d[bin of z_jd])  sums to 1 over sites
    w_i        = max_d p_id,            weights = w / sum_i w_i         (N,), sums to 1

Why the max over dimensions: a site rare in any one latent dimension is upweighted, even when
it is common in all the others (a sum or mean would dilute one rare coordinate among D).

What we follow, checked against the published loop (tests/test_resampling.py): edges are
np.histogram's own (its linspace, in z's float dtype, so float32 embeddings get float32 edges as
there), and a value equal to an inner edge falls in the bin to its right (np.digitize); the last
bin holds the maximum. Vectorised: one pass over all N x D values instead of D histograms.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["mix_uniform", "resampling_weights", "weight_summary"]


def _check_z(z: object) -> np.ndarray:
    arr = np.asarray(z)
    if arr.ndim != 2:
        raise ValueError(f"z must be a 2-D array (n_sites, n_dims); got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"z must have a real numeric dtype; got {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"z needs at least 1 site and 1 dimension; got shape {arr.shape}")
    if arr.dtype.kind != "f":
        # np.histogram bins integers on float64 edges; float dtypes keep their own (see below).
        arr = arr.astype(np.float64)
    bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(f"z contains {bad} non-finite values (NaN or infinite)")
    return np.ascontiguousarray(arr)


def resampling_weights(z: np.ndarray, bins: int = 100, smoothing: float = 0.001) -> np.ndarray:
    """AR sampling weights of N sites from their (N, D) embeddings (formula in the module docstring).

    Args:
        z: (N, D) finite embeddings, N >= 1, D >= 1.
        bins: equal-width histogram bins per dimension, >= 1.
        smoothing: added to every bin's density before renormalising, finite, >= 0. Larger values
            flatten the weights towards uniform; 0 is allowed (an empty bin is never looked up).

    Returns:
        (N,) float64 weights >= 0 summing to 1; equal to the published per-dimension loop
        (``calculate_resampling_weights``) to rounding (~1e-15 relative).
    """
    z = _check_z(z)
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 1:
        raise ValueError(f"bins must be an int >= 1; got {bins!r}")
    if isinstance(smoothing, bool) or not isinstance(smoothing, numbers.Real) or not 0 <= smoothing < np.inf:
        raise ValueError(f"smoothing must be a finite number >= 0; got {smoothing!r}")
    bins, smoothing = int(bins), float(smoothing)
    n, d = z.shape

    # Edges exactly as np.histogram makes them: its linspace over [min, max] in z's dtype, a
    # constant dimension widened by 0.5 each side (in z's dtype too, so the float32 sums round
    # as there). linspace over (D,) bounds gives the same values per row as D scalar calls
    # (it differs only when some row's step underflows to 0, and such a row is refused below).
    lo, hi = z.min(axis=0), z.max(axis=0)
    const = lo == hi
    lo = np.where(const, lo - 0.5, lo)
    hi = np.where(const, hi + 0.5, hi)
    edges = np.linspace(lo, hi, bins + 1, axis=1, dtype=z.dtype)  # (D, bins + 1)
    if not (edges[:, 1:] > edges[:, :-1]).all():
        # np.histogram refuses these too (a range of a few ulps, or x +- 0.5 lost to float32 rounding).
        dim = int(np.flatnonzero(~(edges[:, 1:] > edges[:, :-1]).all(axis=1))[0])
        raise ValueError(f"bins={bins} is too many for the range of z's dimension {dim} "
                         f"([{lo[dim]}, {hi[dim]}] in {z.dtype}): the bins would not all have a width")
    width = np.diff(edges, axis=1).astype(np.float64)  # as np.histogram: diff in z's dtype

    # Bin of each value: the published code looks sites up with np.digitize on edges whose outer
    # ends are set to -inf / +inf, i.e. bin k holds lower_k <= x < upper_k. Flat index j = d * bins
    # + k addresses a (D, bins) table, so the lookup, the counts and the weights share one index.
    lower, upper = edges[:, :-1].copy(), edges[:, 1:].copy()
    lower[:, 0], upper[:, -1] = -np.inf, np.inf
    lower, upper = lower.ravel(), upper.ravel()
    # Estimate by floor((x - lo) / (hi - lo) * bins) in float64 (in [0, bins], even for a range
    # of subnormals), then fix the values whose rounding put them one bin off; only those are
    # re-checked, until none is off.
    lo64 = lo.astype(np.float64)
    j = ((z - lo64) / (hi - lo64) * bins).astype(np.intp)
    np.minimum(j, bins - 1, out=j)
    j += np.arange(d) * bins
    j, zf = j.reshape(-1), z.reshape(-1)
    off = np.flatnonzero((zf < lower[j]) | (zf >= upper[j]))
    while off.size:  # the open outer edges keep every j inside its own dimension's row
        x, jo = zf[off], j[off]
        jo = jo - (x < lower[jo]) + (x >= upper[jo])
        j[off] = jo
        off = off[(x < lower[jo]) | (x >= upper[jo])]

    counts = np.bincount(j, minlength=d * bins).reshape(d, bins)
    density = counts / width / n  # np.histogram(density=True): n / db / n.sum()
    smoothed = density + smoothing
    smoothed /= smoothed.sum(axis=1, keepdims=True)
    # A site's per-dimension weight depends only on its bin, so normalise per bin: the sum over
    # sites of 1 / s is sum_k count_k / s_k. Empty bins (s may be 0 when smoothing is 0) are
    # never looked up; they get 0 rather than inf.
    used = counts > 0
    inv = np.divide(1.0, smoothed, out=np.zeros_like(smoothed), where=used)
    total = np.divide(counts, smoothed, out=np.zeros_like(smoothed), where=used).sum(axis=1, keepdims=True)
    per_bin = (inv / total).ravel()
    w = per_bin[j].reshape(n, d).max(axis=1)
    return w / w.sum()


def _check_weights(weights: object) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1 or w.size < 1:
        raise ValueError(f"weights must be a non-empty 1-D array; got shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError("weights must be finite and >= 0")
    if abs(w.sum() - 1.0) > 1e-6:
        raise ValueError(f"weights must sum to 1 (within 1e-6); got {w.sum()!r}")
    return w


def weight_summary(weights: np.ndarray) -> dict[str, float]:
    """{'ar_ess': (1 / sum w^2) / N, 'ar_max_weight': max(w) * N} of weights that sum to 1.

    ``ar_ess`` is Kish's effective sample size as a share of N (1 = uniform, 1/N = one site);
    ``ar_max_weight`` is how many times more often than uniform the most favoured site is drawn.
    """
    w = _check_weights(weights)
    n = w.size
    return {"ar_ess": float(1.0 / np.dot(w, w) / n), "ar_max_weight": float(w.max() * n)}


def mix_uniform(weights: np.ndarray, mix: float) -> np.ndarray:
    """(1 - mix) * w + mix / N: share `mix` of the draws uniform, so no site's probability is 0."""
    w = _check_weights(weights)
    if isinstance(mix, bool) or not isinstance(mix, numbers.Real) or not 0 <= mix <= 1:
        raise ValueError(f"mix must be a number in [0, 1]; got {mix!r}")
    return (1.0 - float(mix)) * w + float(mix) / w.size
