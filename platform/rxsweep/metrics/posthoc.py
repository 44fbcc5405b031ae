"""Post-hoc batch corrections of well profiles: the baselines a reviewer asks a DANN to beat.

If an ERM embedding followed by a standard correction mixes the held-out experiments as well as a
domain adversary does, the adversary bought nothing. Both corrections run on the profiles of the
experiments being judged (transductively, as profiling pipelines do); neither reads labels.

sphering (per experiment e, fitted on its control wells C_e, n_c x d; ZCA whitening, the
"sphering on negative controls" / typical variation normalisation of image-based profiling):

    mu_e  = mean(C_e)                     S_e = cov(C_e)   (ddof = 1)
    lam_e = epsilon * trace(S_e) / d      (epsilon times the mean eigenvalue of S_e)
    W_e   = V diag((s + lam_e)^(-1/2)) V^T        S_e = V diag(s) V^T
    x'    = (x - mu_e) W_e                for every profile x of e

    The regulariser. An RxRx1 experiment has 31 control wells a plate (30 positive-control siRNAs
    and 1 untreated well), the tiny synthetic preset 4 a plate: 16 to 124 controls for 64 to 128
    dimensions, so S_e is often singular (rank <= n_c - 1) and its small eigenvalues are
    underestimated. Plain whitening (pycytominer's absolute epsilon = 1e-6) would multiply the
    directions the few controls happen not to span by ~1000; with lam_e a direction of no control
    variance gains at most 1/sqrt(epsilon) times the gain of a direction of average variance
    (3.2x for epsilon = 0.1, the default). Scaling lam_e with the mean eigenvalue makes the map
    equivariant to the scale of each experiment: x -> a x + b (a scalar, b a shift) in one
    experiment gives exactly the same output, so a per-experiment shift and scale is removed
    whatever epsilon is. Arevalo et al. (Nat Commun 2024) tuned an absolute epsilon over 1e-5..1e3
    on standardised features; a relative one needs no standardisation and no tuning on the test
    experiments. ``corrected_profiles`` uses every control well (well_type != "treatment"): the
    one untreated well a plate leaves 4 an experiment, too few for a covariance, and the positive
    controls are the same siRNAs in every experiment, so their mean and spread differ between
    experiments only by the batch.

harmony (Korsunsky et al., Nat Methods 2019, via ``harmonypy``): soft k-means clustering with a
    diversity penalty, then a per-cluster ridge regression of the batch out of each profile. Run
    within each cell type by ``corrected_profiles`` (experiments of different cell types are not
    expected to mix: asking Harmony to mix them would erase biology), on the profiles as they are
    (64-128 dims, no PCA first). Number of clusters: Harmony's default min(round(N / 30), 100)
    (about 30 profiles a cluster), floored at 1: on N < 45 profiles it is one cluster, i.e. a
    ridge-shrunk per-batch mean shift; the bare default is 0 clusters below N = 15 and fails.
    Deterministic given ``seed`` (harmonypy's ``random_state`` seeds its k-means initialisation;
    its results do not depend on the thread count).
"""

from __future__ import annotations

import numbers
from typing import Callable

import numpy as np
import pandas as pd

from .checks import check_batches, check_embedding, check_labels
from .well_profiles import stack

__all__ = ["CORRECTIONS", "corrected_profiles", "harmony", "harmony_nclust", "register_correction",
           "sphere_on_controls"]

#: name -> function(wells frame, **kwargs) -> (n_wells, d) corrected profiles.
CORRECTIONS: dict[str, Callable[..., np.ndarray]] = {}


def register_correction(name: str):
    """Decorator adding a correction to CORRECTIONS under ``name``; refuses duplicates."""
    def add(fn):
        if name in CORRECTIONS:
            raise ValueError(f"correction {name!r} is already registered")
        CORRECTIONS[name] = fn
        return fn
    return add


def sphere_on_controls(profiles: np.ndarray, experiment: np.ndarray, is_control: np.ndarray,
                       epsilon: float = 0.1) -> np.ndarray:
    """ZCA whitening of each experiment's profiles, fitted on its control profiles (module doc).

    Args:
        profiles: (n, d) finite float well profiles.
        experiment: (n,) experiment of each profile.
        is_control: (n,) bool, True for the control wells the whitening is fitted on; every
            experiment needs at least 2.
        epsilon: regulariser, > 0, relative to the mean eigenvalue of the controls' covariance.

    Returns:
        (n, d) float64 sphered profiles, rows in the input order.
    """
    X = check_embedding(profiles, "profiles")
    n, d = X.shape
    exp = check_labels(experiment, n, "experiment")
    ctrl = np.asarray(is_control)
    if ctrl.shape != (n,) or ctrl.dtype != bool:
        raise ValueError(f"is_control must be a bool array of shape ({n},); got {ctrl.dtype} {ctrl.shape}")
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not float(epsilon) > 0:
        raise ValueError(f"epsilon must be a number > 0; got {epsilon!r}")
    names = np.unique(np.asarray(experiment))
    out = np.empty_like(X)
    for e in range(int(exp.max()) + 1):
        members = exp == e
        controls = X[members & ctrl]
        if controls.shape[0] < 2:
            raise ValueError(f"is_control marks {controls.shape[0]} profile(s) of experiment "
                             f"{names[e]!r}; sphering needs at least 2 controls an experiment")
        mu = controls.mean(axis=0)
        cov = np.atleast_2d(np.cov(controls, rowvar=False, ddof=1))
        lam = float(epsilon) * np.trace(cov) / d
        if not lam > 0:
            raise ValueError(f"is_control: the control profiles of experiment {names[e]!r} are all "
                             "identical; their covariance cannot be whitened")
        s, V = np.linalg.eigh(cov)
        W = (V / np.sqrt(np.maximum(s, 0.0) + lam)) @ V.T  # symmetric (ZCA)
        out[members] = (X[members] - mu) @ W
    return out


def harmony_nclust(n: int) -> int:
    """Harmony's cluster count for n profiles: min(round(n / 30), 100), at least 1 (module doc)."""
    return int(max(1, min(round(n / 30.0), 100)))


def harmony(profiles: np.ndarray, batch: np.ndarray, seed: int = 0, **kw) -> np.ndarray:
    """Harmony-corrected profiles (harmonypy.run_harmony; module doc), rows in the input order.

    Args:
        profiles: (n, d) finite float profiles.
        batch: (n,) batch (experiment) of each profile, at least 2 distinct.
        seed: Harmony's random_state.
        **kw: passed to harmonypy.run_harmony (theta, sigma, max_iter_harmony, ...); ``nclust``
            defaults to harmony_nclust(n), ``ncores`` to 1 (results do not depend on it).

    Returns:
        (n, d) float64 corrected profiles.
    """
    import harmonypy  # optional until used

    X = check_embedding(profiles, "profiles")
    n, d = X.shape
    check_batches(check_labels(batch, n, "batch"))
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    for name in ("data_mat", "meta_data", "vars_use", "random_state", "verbose"):
        if name in kw:
            raise ValueError(f"kw must not set {name!r}; it is set by harmony()")
    kw.setdefault("nclust", harmony_nclust(n))
    kw.setdefault("ncores", 1)
    meta = pd.DataFrame({"batch": np.asarray(batch).astype(str)})
    result = harmonypy.run_harmony(X, meta, "batch", random_state=int(seed), verbose=False, **kw)
    Z = np.asarray(result.Z_corr, dtype=np.float64)
    # harmonypy >= 1 returns cells x dims; 0.0.x returned dims x cells.
    if Z.shape != (n, d) or (n == d and getattr(harmonypy, "__version__", "1").startswith("0.")):
        Z = Z.T
    if Z.shape != (n, d):
        raise ValueError(f"harmonypy returned shape {Z.shape} for profiles of shape {(n, d)}")
    return np.ascontiguousarray(Z)


@register_correction("sphering")
def _sphering(wells: pd.DataFrame, epsilon: float = 0.1) -> np.ndarray:
    return sphere_on_controls(stack(wells["embedding"], np.float64), wells["experiment"].to_numpy(),
                              (wells["well_type"] != "treatment").to_numpy(), epsilon=epsilon)


@register_correction("harmony")
def _harmony(wells: pd.DataFrame, seed: int = 0, **kw) -> np.ndarray:
    X = stack(wells["embedding"], np.float64)
    out = X.copy()
    for _, rows in wells.groupby("cell_type", sort=True).indices.items():
        if wells["experiment"].iloc[rows].nunique() >= 2:  # one experiment: nothing to correct
            out[rows] = harmony(X[rows], wells["experiment"].to_numpy()[rows], seed=seed, **kw)
    return out


def corrected_profiles(wells: pd.DataFrame, method: str, **kwargs) -> pd.DataFrame:
    """A copy of a well_profiles() frame with ``embedding`` replaced by the correction ``method``
    ("sphering": per experiment on its control wells; "harmony": within each cell type with
    experiment as the batch; a cell type with one experiment is left as it is). ``kwargs`` go to
    the correction (epsilon for sphering; seed, nclust, theta, ... for harmony)."""
    if method not in CORRECTIONS:
        raise ValueError(f"unknown correction {method!r}; known: {sorted(CORRECTIONS)}")
    if not isinstance(wells, pd.DataFrame):
        raise ValueError(f"wells must be a pandas DataFrame; got {type(wells).__name__}")
    missing = [c for c in ("embedding", "experiment", "well_type", "cell_type") if c not in wells.columns]
    if missing:
        raise ValueError(f"wells lacks columns {missing} (a well_profiles() frame has them)")
    corrected = CORRECTIONS[method](wells, **kwargs)
    out = wells.copy()
    out["embedding"] = list(corrected.astype(np.float32))
    return out
