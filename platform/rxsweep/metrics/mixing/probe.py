"""Batch probe: can a linear classifier read the batch off the embedding?

    pred  = out-of-fold predictions of StandardScaler -> LogisticRegression (multinomial, lbfgs,
            C = 1) for batch, GroupKFold(n_splits, shuffled with seed) over ``groups``
    bacc  = mean over batches of recall(batch)                     (balanced accuracy, pooled
                                                                    over all out-of-fold points)
    kappa = clip((bacc - 1/B) / (1 - 1/B), 0, 1)                   chance-corrected
    batch_probe = 1 - kappa                                        in [0, 1], 1 = unreadable

Not a scib metric; it is the linear-probe form of the batch-prediction tests used for image
embeddings (e.g. "predict the plate/experiment from the features"). Grouping matters: with the
two sites of one well in different folds, the probe could read the well rather than the batch, so
pass well ids as ``groups``. Out-of-fold predictions are pooled before scoring (one balanced
accuracy, not a mean of per-fold ones), so small folds do not add noise. The scaler is fitted on
training folds only. Class counts: B = batches present in ``batch``; a batch absent from a training
fold simply cannot be predicted in that fold.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..checks import check_batches, check_embedding, check_labels
from ._parallel import map_blocks

__all__ = ["batch_probe"]


def batch_probe(
    X: np.ndarray,
    batch: np.ndarray,
    groups: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    *,
    max_iter: int = 200,
) -> float:
    """1 - chance-corrected balanced accuracy of a grouped-CV logistic probe for batch.

    Args:
        X: (n, d) finite float embedding.
        batch: (n,) batch labels, at least 2 distinct.
        groups: (n,) group ids kept together in one fold (e.g. well ids); at least n_splits.
        n_splits: folds, >= 2.
        seed: shuffles the assignment of groups to folds.
        max_iter: lbfgs iterations per fit (convergence warnings are silenced: the probe only
            needs the decision, and a capped fit is at worst a weaker probe).

    Returns:
        Float in [0, 1]; 1 = the probe does no better than chance, 0 = it reads the batch exactly.
    """
    X = check_embedding(X)
    n = X.shape[0]
    codes = check_labels(batch, n, "batch")
    n_batches = check_batches(codes)
    g_codes = check_labels(groups, n, "groups")
    if isinstance(n_splits, bool) or not isinstance(n_splits, numbers.Integral) or n_splits < 2:
        raise ValueError(f"n_splits must be an integer >= 2; got {n_splits!r}")
    n_groups = int(g_codes.max()) + 1
    if n_groups < n_splits:
        raise ValueError(f"groups has {n_groups} distinct values, fewer than n_splits={n_splits}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")

    pred = np.empty(n, dtype=np.int64)
    cv = GroupKFold(n_splits=int(n_splits), shuffle=True, random_state=int(seed))

    def fit_predict(fold: tuple[np.ndarray, np.ndarray]) -> None:
        train, test = fold
        if np.unique(codes[train]).size < 2:
            pred[test] = codes[train][0]  # a one-class training fold predicts that class
            return
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
        model.fit(X[train], codes[train])
        pred[test] = model.predict(X[test])

    # Folds run on threads with one BLAS thread each: the products here are skinny (n x d times
    # d x B), and on a loaded machine 2-thread BLAS spin-waiting made fits 10x slower (measured).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        map_blocks(fit_predict, list(cv.split(X, codes, g_codes)))
    recall = np.bincount(codes, weights=(pred == codes), minlength=n_batches) / np.bincount(codes, minlength=n_batches)
    bacc = float(recall.mean())
    kappa = min(1.0, max(0.0, (bacc - 1.0 / n_batches) / (1.0 - 1.0 / n_batches)))
    return 1.0 - kappa
