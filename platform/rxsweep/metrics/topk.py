"""Top-k accuracy of per-row class scores.

    hit_i = [z_{i,y_i} >= z_{i,(k)}], z_{i,(k)} the k-th largest of row i;
    acc = mean_i hit_i                       (ties count as hits)
"""

from __future__ import annotations

import numbers

import numpy as np

from .checks import check_int_labels, check_scores

__all__ = ["topk_accuracy"]


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, k: int = 1) -> float:
    """Share of rows whose label is among the ``k`` largest logits (formula in the module doc).

    Args:
        logits: (n, C) float scores or log-probabilities; -inf allowed, NaN not.
        labels: (n,) integer class ids in [0, C).
        k: 1 <= k <= C.
    """
    z = check_scores(logits, "logits")
    n, n_classes = z.shape
    y = check_int_labels(labels, n, "labels", n_classes)
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= int(k) <= n_classes:
        raise ValueError(f"k must be an integer in [1, {n_classes}]; got {k!r}")
    kth = np.partition(z, n_classes - int(k), axis=1)[:, n_classes - int(k)]
    return float(np.mean(z[np.arange(n), y] >= kth))
