"""Argument checks shared by the metrics.

Every check raises ``ValueError`` whose message starts with the name of the bad argument, so a
caller (and a test) can tell which input was wrong without reading a traceback. Each returns the
checked value in the form the metrics compute on (an array of a fixed dtype, an int, a float).
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd


def check_embedding(X: object, name: str = "X") -> np.ndarray:
    """Return ``X`` as a C-contiguous float64 array of shape (n, d) after checking it.

    ``X`` must be 2-D, of a floating dtype, with at least 2 rows and 1 column, and finite.
    """
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_points, n_dims); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must have a floating dtype; got {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 points and 1 dimension; got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_labels(values: object, n: int, name: str) -> np.ndarray:
    """Return per-point categorical ``values`` as int64 codes 0..C-1 (sorted order of the values).

    ``values`` must be 1-D, of length ``n``, without missing values (None / NaN).
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has length {arr.shape[0]} but X has {n} points")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if arr.dtype.kind == "O" and any(v is None or (isinstance(v, float) and v != v) for v in arr):
        raise ValueError(f"{name} contains missing values (None/NaN)")
    try:
        _, codes = np.unique(arr, return_inverse=True)
    except TypeError as e:  # mixed, unorderable object values
        raise ValueError(f"{name} values must be mutually comparable: {e}") from None
    return codes.reshape(-1).astype(np.int64)


def check_batches(codes: np.ndarray, name: str = "batch") -> int:
    """Return the number of distinct batches; at least 2 are needed to talk about mixing."""
    n_batches = int(codes.max()) + 1 if codes.size else 0
    if n_batches < 2:
        raise ValueError(f"{name} must contain at least 2 distinct batches; got {n_batches}")
    return n_batches


def check_k(k: object, n: int, name: str = "k") -> int:
    """``k`` neighbours (the point itself excluded) need ``1 <= k < n``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"{name} must be an integer; got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"{name} must be >= 1; got {k}")
    if k >= n:
        raise ValueError(f"{name}={k} must be smaller than the number of points ({n})")
    return k


def check_open_unit(x: object, name: str) -> float:
    """A probability-like scalar in the open interval (0, 1)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real) or not 0.0 < float(x) < 1.0:
        raise ValueError(f"{name} must be a number in (0, 1); got {x!r}")
    return float(x)


def check_scores(values: object, name: str) -> np.ndarray:
    """(n, C) floating array, n >= 1, no NaN or +inf (-inf is a legal log-probability)."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty 2-D array (n, n_classes); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must have a floating dtype; got {arr.dtype}")
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise ValueError(f"{name} contains NaN or +inf")
    return arr


def check_int_labels(values: object, n: int, name: str, n_classes: int | None = None) -> np.ndarray:
    """Return integer class ids as int64 after checking them.

    ``values`` must be 1-D, of length ``n``, of an integer dtype, and (when ``n_classes`` is
    given) lie in [0, n_classes). Unlike :func:`check_labels` the ids are kept, not re-coded.
    """
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer class ids; got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n_classes is not None and arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}); got range [{arr.min()}, {arr.max()}]")
    return arr


def check_keys(values: object, n: int, name: str) -> np.ndarray:
    """Per-site keys (strings, ints) -> int codes; 1-D, length n, nothing missing."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}; got shape {arr.shape}")
    codes, _ = pd.factorize(arr)
    if (codes < 0).any():
        raise ValueError(f"{name} contains missing values (None/NaN)")
    return codes


def check_class_id(x: object, n_classes: int, name: str) -> int:
    """One class id: an integer (not a bool) in [0, n_classes); returned as an int."""
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or not 0 <= int(x) < n_classes:
        raise ValueError(f"{name} must be an integer class id in [0, {n_classes}); got {x!r}")
    return int(x)
