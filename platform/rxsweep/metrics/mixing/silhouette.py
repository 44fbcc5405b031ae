"""Batch ASW: silhouette of batch within each label (Luecken et al. 2022, scib ``silhouette_batch``).

Within label l (points I_l), with batch as the cluster assignment and Euclidean distances d:

    a_i = mean_{j in I_l, batch_j = batch_i, j != i} d_ij
    b_i = min_{b != batch_i} mean_{j in I_l, batch_j = b} d_ij
    s_i = (b_i - a_i) / max(a_i, b_i)         (0 if i is alone in its batch, or a_i = b_i = 0)
    asw_l = mean_{i in I_l} (1 - |s_i|)
    silhouette_batch = mean over scored labels of asw_l     in [0, 1], 1 = batches overlap

What we follow: scib's ``silhouette_batch(..., scale=True)`` and scib-metrics' ``silhouette_batch``
(rescale=True): sklearn's ``silhouette_samples`` definition (s_i above), absolute value, 1 - |s|,
mean per label, unweighted mean over labels. As there, a label is skipped when its points come
from a single batch or when every point has its own batch (silhouette undefined); if every label is
skipped the result is NaN (scib would fail on an empty concat). Labels are thus weighted equally,
whatever their size. The label is the cell type, as in scib: ``batch_mixing_scores`` calls this
within one cell type with a single label, so there asw is the mean of 1 - |s_i| over the stratum.
A label with one point per batch (a treatment siRNA's wells across experiments) is always
skipped, which is why the siRNA is not used as the label.

Cost: sum_l |I_l|^2 d (float64 Gram-trick distances in row blocks, never the full matrix).
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import check_batches, check_embedding, check_labels
from ._parallel import map_blocks

__all__ = ["silhouette_batch", "silhouette_samples"]


def silhouette_samples(X: np.ndarray, codes: np.ndarray, *, block_rows: int | None = None) -> np.ndarray:
    """Per-point silhouette (Euclidean), sklearn's definition, in row blocks.

    Args:
        X: (m, d) float64 points. codes: (m,) cluster codes 0..C-1 with C >= 2.

    Returns:
        (m,) silhouettes in [-1, 1]; 0 for points alone in their cluster.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    codes = np.asarray(codes)
    m = X.shape[0]
    n_clusters = int(codes.max()) + 1
    counts = np.bincount(codes, minlength=n_clusters).astype(np.float64)
    Xt = torch.from_numpy(X)
    sq = (Xt * Xt).sum(1)
    onehot = torch.zeros((m, n_clusters), dtype=torch.float64)
    onehot[torch.arange(m), torch.from_numpy(codes)] = 1.0
    if block_rows is None:
        block_rows = max(16, min(m, (1 << 24) // max(m, 1)))  # ~128 MiB of float64 distances
    sums = np.empty((m, n_clusters))
    for start in range(0, m, block_rows):
        stop = min(m, start + block_rows)
        D = torch.addmm(sq.unsqueeze(0), Xt[start:stop], Xt.T, alpha=-2.0)
        D.add_(sq[start:stop].unsqueeze(1)).clamp_(min=0.0)
        D[torch.arange(stop - start), torch.arange(start, stop)] = 0.0  # as sklearn: d_ii = 0
        D.sqrt_()
        sums[start:stop] = (D @ onehot).numpy()
    rows = np.arange(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sums[rows, codes] / (counts[codes] - 1.0)
        mean_other = sums / counts
        mean_other[rows, codes] = np.inf
        b = mean_other.min(axis=1)
        s = (b - a) / np.maximum(a, b)
    return np.nan_to_num(s, nan=0.0, posinf=0.0, neginf=0.0)


def silhouette_batch(X: np.ndarray, batch: np.ndarray, labels: np.ndarray) -> float:
    """Batch ASW within labels, scaled so 1 = batches overlap (formula in the module docstring).

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch labels, at least 2 distinct overall.
        labels: (n,) biological labels (the cell type, as scib); the silhouette is taken within each.

    Returns:
        Float in [0, 1], or NaN when no label holds points of 2+ batches.
    """
    X = check_embedding(X)
    n = X.shape[0]
    b_codes = check_labels(batch, n, "batch")
    check_batches(b_codes)
    l_codes = check_labels(labels, n, "labels")
    items = []
    for lab in range(int(l_codes.max()) + 1):
        mask = l_codes == lab
        _, sub = np.unique(b_codes[mask], return_inverse=True)
        n_b = int(sub.max()) + 1 if sub.size else 0
        if n_b <= 1 or n_b == int(mask.sum()):
            continue  # silhouette undefined; scib skips the label
        items.append((mask, sub.reshape(-1)))
    if not items:
        return float("nan")
    # Labels are independent: spread them over threads (largest first for balance).
    items.sort(key=lambda it: -int(it[0].sum()))
    scores = map_blocks(lambda it: float(np.mean(1.0 - np.abs(silhouette_samples(X[it[0]], it[1])))), items)
    return float(np.mean(scores))
