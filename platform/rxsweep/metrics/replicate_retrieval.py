"""Replicate retrieval: how well a treatment well's siRNA is retrieved from OTHER experiments.

The average precision (AP) and mean AP (mAP) of copairs (Kalinin et al. 2025, Nat. Commun.
16:5181), as image-based profiling scores replicates across batches (Arevalo et al. 2024,
Nat. Commun., "Evaluating batch correction methods for image-based cell profiling"). For a
query well i, the candidates are every well of another experiment, ranked by similarity to i
(cosine of the vectors), and the positives are the candidates of i's siRNA:

    C_i = {j : experiment_j != experiment_i}        R_i = {j in C_i : label_j = label_i}
    AP_i = (1/|R_i|) sum_{r : rank r holds a positive} precision@r
    map    = mean_{i in Q, |R_i| > 0} AP_i          chance = mean_{i in Q, |R_i| > 0} |R_i| / |C_i|

Which wells are queries (Q). :func:`replicate_map` queries the *treatment* wells only. Control
wells (positive controls, the untreated well) are candidates, i.e. negatives of every treatment
query (a control never shares a treatment's siRNA), but never queries. This is copairs'
``average_precision(meta, feats, pos_sameby=[label], pos_diffby=[experiment], neg_sameby=[],
neg_diffby=[label, experiment])`` with its rows kept for treatment wells, the way JUMP's
profiling recipe keeps controls out of the queries (its negative controls get unique ids so they
find no positives, and their rows are dropped; it drops positive controls altogether, which here
stay candidates, as in the all-wells score before). Why: the same few controls sit in every
experiment and are the easiest siRNAs to retrieve, so querying them inflates the score and hides
the treatments (one run: mAP 0.454 over all 288 well queries, 0.234 over its 160 treatment
queries).
:func:`replicate_retrieval` takes the query set as a mask (None = every well, the old score).

Per siRNA, as copairs' ``mean_average_precision`` (sameby=[label]): mAP_s = mean of AP_i over
the scored treatment queries of siRNA s; its p-value compares mAP_s with the mean of null APs of
random rankings of the same (|R_i|, |C_i|) configurations, p = (#{null > mAP_s} + 1) /
(null_size + 1); the p-values of all siRNAs are Benjamini-Hochberg corrected (copairs'
``apply_fdr_correction``, method "fdr_bh"), and

    retrieved_fraction = share of scored treatment siRNAs whose corrected p-value < 0.05

(JUMP's "fraction retrieved"). The smallest p-value is 1 / (null_size + 1): with m siRNAs, BH can
call k of them retrieved only if 1 / (null_size + 1) <= 0.05 k / m, so null_size bounds how few
retrieved siRNAs can be seen among many (NULL_SIZE = 10,000: k >= m / 500).

Ties. Candidates with the same similarity are ranked against the query (negatives first), so a
collapsed embedding, where everything ties, scores at or below chance rather than by how the rows
happen to be ordered. copairs ranks ties positives first (a stable sort of its positive pairs
before its negative ones): it gives a collapsed embedding AP 1 for every query, which a sweep
that rewards batch mixing (which collapse maximises) must not see. Everywhere else the two are
the same ranking: on tie-free profiles this AP equals copairs' ``average_precision`` to 1e-6
(tests/test_replicate_map.py), so :func:`replicate_map` computes the per-query AP here (vectorised,
O(n^2 log n), no pandas or duckdb) and leaves the per-siRNA mAP, the null distributions, the
p-values and their correction to copairs.
"""

from __future__ import annotations

import math
import numbers
import tempfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checks import check_embedding, check_labels

__all__ = ["NULL_SIZE", "PER_LABEL_COLUMNS", "THRESHOLD", "TREATMENT", "replicate_map",
           "replicate_retrieval", "replicate_retrieval_map"]

#: The well_type of the wells that are queries in replicate_map (rxrx1 WELL_TYPES).
TREATMENT = "treatment"
#: Null APs a (|R_i|, |C_i|) configuration: JUMP's 10,000 (the module doc says why it matters).
NULL_SIZE = 10_000
#: A siRNA counts as retrieved when its BH-corrected p-value is below this.
THRESHOLD = 0.05
#: Columns of replicate_map's per-siRNA table.
PER_LABEL_COLUMNS = ("label", "n_queries", "mean_average_precision", "p_value", "corrected_p_value",
                     "below_corrected_p")

_QUANTUM = 1e-12  # similarities closer than this (relative to their scale) count as tied
_BLOCK_CELLS = 1 << 20  # retrieval works on (queries x n) blocks of at most this many entries


@dataclass(frozen=True)
class _Ranked:
    """Per query well: its row, AP (NaN without a positive), |R_i| and |C_i|."""

    rows: np.ndarray
    ap: np.ndarray
    n_pos: np.ndarray
    n_cand: np.ndarray


def replicate_retrieval(X: np.ndarray, labels: np.ndarray, experiment: np.ndarray,
                        queries: np.ndarray | None = None, metric: str = "cosine") -> dict:
    """Cross-experiment replicate retrieval mAP and its chance level (formulas in the module doc).

    The fast path: numpy only, for callers that score many resamples (a bootstrap); its mAP is
    :func:`replicate_map`'s ``map`` when ``queries`` marks the treatment wells.

    Args:
        X: (n, d) finite float embedding (or any per-well profile).
        labels: (n,) siRNA labels (any comparable values).
        experiment: (n,) experiment of each row; at least 2 distinct.
        queries: (n,) bool, the rows that are queries (e.g. well_type == "treatment"); every row
            stays a candidate for the queries of other experiments. None = every row a query.
        metric: "cosine" (similarity of the raw vectors; a zero vector is similar to nothing)
            or "euclidean" (similarity = -squared distance).

    Cost: O(q n log n) time for q queries (one sort of n candidates a query), about 2 s for
    5,000 x 128 on one core, memory bounded by blocks of queries.

    Returns:
        {"map": mean AP over scored queries, "n_queries": scored queries (with a positive),
        "n_skipped": queries with no positive, "chance": mean |R_i|/|C_i| over scored queries}.
        With no scored query, map and chance are NaN.
    """
    return _summary(_rank_queries(X, labels, experiment, queries, metric))


def replicate_retrieval_map(X: np.ndarray, labels: np.ndarray, experiment: np.ndarray,
                            metric: str = "cosine", *, queries: np.ndarray | None = None) -> float:
    """``replicate_retrieval(...)["map"]``: cross-experiment replicate mAP in [0, 1]."""
    return replicate_retrieval(X, labels, experiment, queries, metric)["map"]


def replicate_map(X: np.ndarray, labels: np.ndarray, experiment: np.ndarray, well_type: np.ndarray, *,
                  null_size: int = NULL_SIZE, seed: int = 0) -> dict:
    """Replicate mAP of the treatment wells and the fraction of siRNAs retrieved (module doc).

    Args:
        X: (n, d) finite float well profiles (cosine similarity).
        labels: (n,) siRNA labels; experiment: (n,) experiments, at least 2 distinct.
        well_type: (n,) well types; rows equal to "treatment" are the queries, the others
            (controls) only candidates.
        null_size: null APs a configuration for the permutation p-values (>= 1).
        seed: seed of copairs' null distributions (the result is a function of the inputs and
            the seed: the nulls are not shared between calls).

    Cost: the fast path's ranking plus copairs' nulls, null_size x |C_i| draws a distinct
    (|R_i|, |C_i|); ~0.08 s for 288 wells x 128 dims of 8 experiments at null_size 10,000.

    Returns:
        {"map": mean AP over treatment queries with a positive, "retrieved_fraction": share of
        their siRNAs with BH-corrected p < THRESHOLD, "n_queries": those queries, "chance":
        mean |R_i|/|C_i| over them, "per_label": DataFrame of PER_LABEL_COLUMNS, one row a
        scored siRNA}. With no scored query, the numbers are NaN and the table is empty.
    """
    X = check_embedding(X)
    queries = _treatment_queries(well_type, X.shape[0])
    null_size = _check_int(null_size, "null_size", low=1)
    seed = _check_int(seed, "seed", low=0)
    ranked = _rank_queries(X, labels, experiment, queries, "cosine")
    scored = ranked.n_pos > 0
    per_label = _per_label_map(np.asarray(labels)[ranked.rows[scored]], ranked.ap[scored],
                               ranked.n_pos[scored], ranked.n_cand[scored], null_size, seed)
    summary = _summary(ranked)
    fraction = float(per_label["below_corrected_p"].mean()) if len(per_label) else math.nan
    return {"map": summary["map"], "retrieved_fraction": fraction, "n_queries": summary["n_queries"],
            "chance": summary["chance"], "per_label": per_label}


def _rank_queries(X, labels, experiment, queries, metric: str) -> _Ranked:
    """Rank every query's candidates and return its AP, |R_i| and |C_i| (checks the arguments)."""
    X = check_embedding(X)
    n = X.shape[0]
    lab = check_labels(labels, n, "labels")
    exp = check_labels(experiment, n, "experiment")
    if exp.max() < 1:
        raise ValueError("experiment must contain at least 2 distinct experiments")
    rows = _query_rows(queries, n)
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Y = X / np.where(norms > 0, norms, 1.0)
        scale = 1.0
    elif metric == "euclidean":
        sq = np.einsum("ij,ij->i", X, X)
        scale = max(float(sq.max()), np.finfo(np.float64).tiny)
    else:
        raise ValueError(f"metric must be 'cosine' or 'euclidean'; got {metric!r}")

    ap, n_pos, n_cand = np.full(len(rows), np.nan), np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
    sentinel = np.iinfo(np.int64).max
    block = max(1, _BLOCK_CELLS // n)
    for lo in range(0, len(rows), block):
        q = rows[lo:lo + block]
        if metric == "cosine":
            sim = Y[q] @ Y.T
        else:
            sim = -np.maximum(sq[q, None] + sq[None, :] - 2.0 * (X[q] @ X.T), 0.0)
        cand = exp[q, None] != exp[None, :]
        rel = cand & (lab[q, None] == lab[None, :])
        # Integer sort key: higher (quantised) similarity first; on a tie the irrelevant candidate
        # first (key + 1 for relevant); non-candidates last. Quantising makes float noise ties.
        key = -2 * np.rint(sim / (scale * _QUANTUM)).astype(np.int64) + rel
        key[~cand] = sentinel
        rel_sorted = np.take_along_axis(rel, np.argsort(key, axis=1), axis=1)
        hits = np.cumsum(rel_sorted, axis=1)
        prec = np.where(rel_sorted, hits / np.arange(1, n + 1), 0.0).sum(axis=1)
        block_pos = hits[:, -1]
        ok = block_pos > 0
        ap[lo:lo + len(q)][ok] = prec[ok] / block_pos[ok]
        n_pos[lo:lo + len(q)] = block_pos
        n_cand[lo:lo + len(q)] = cand.sum(axis=1)
    return _Ranked(rows, ap, n_pos, n_cand)


def _summary(ranked: _Ranked) -> dict:
    ok = ranked.n_pos > 0
    n_scored = int(ok.sum())
    if not n_scored:
        return {"map": math.nan, "n_queries": 0, "n_skipped": len(ranked.rows), "chance": math.nan}
    return {"map": float(ranked.ap[ok].mean()), "n_queries": n_scored, "n_skipped": len(ranked.rows) - n_scored,
            "chance": float((ranked.n_pos[ok] / ranked.n_cand[ok]).mean())}


def _per_label_map(label_values, ap, n_pos, n_cand, null_size: int, seed: int) -> pd.DataFrame:
    """copairs' per-siRNA mAP, permutation p-values and BH correction of the scored queries' APs."""
    if len(ap) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in PER_LABEL_COLUMNS})
    from copairs.map import mean_average_precision  # pandas, statsmodels: only when scoring

    frame = pd.DataFrame({"label": label_values, "average_precision": ap, "n_pos_pairs": n_pos,
                          "n_total_pairs": n_cand,
                          "normalized_average_precision": _normalized_ap(ap, n_pos, n_cand)})
    # A private cache: copairs seeds a configuration's null by its position among the call's
    # configurations, so a shared cache (its default, ~/.copairs) would make a call's p-values
    # depend on which call first wrote a configuration.
    with tempfile.TemporaryDirectory(prefix="rxsweep-copairs-") as cache:
        scores = mean_average_precision(frame, ["label"], null_size=null_size, threshold=THRESHOLD, seed=seed,
                                        progress_bar=False, cache_dir=cache)
    scores["n_queries"] = scores["indices"].map(len).astype(np.int64)
    return scores[list(PER_LABEL_COLUMNS)].reset_index(drop=True)


def _normalized_ap(ap: np.ndarray, n_pos: np.ndarray, n_cand: np.ndarray) -> np.ndarray:
    """copairs' normalize_ap, (AP - mu0) / max(1 - mu0, 1e-10) clipped to [-1, 1], mu0 = its
    expected_ap of a random ranking: mu0 evaluated once a (|R_i|, |C_i|) configuration, since
    normalize_ap calls expected_ap, an O(|C_i|) Python sum, once a query."""
    from copairs.map.normalization import expected_ap

    confs, inverse = np.unique(np.stack([n_pos, n_cand], axis=1), axis=0, return_inverse=True)
    mu0 = np.array([expected_ap(int(m), int(total - m)) for m, total in confs])[inverse.reshape(-1)]
    return np.clip((ap - mu0) / np.maximum(1.0 - mu0, 1e-10), -1.0, 1.0)


def _query_rows(queries, n: int) -> np.ndarray:
    if queries is None:
        return np.arange(n)
    if isinstance(queries, str):
        raise ValueError(f"queries must be a boolean mask or None; got {queries!r} (pass metric= by keyword)")
    mask = np.asarray(queries)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"queries must be a boolean mask of shape ({n},); got dtype {mask.dtype}, "
                         f"shape {mask.shape}")
    return np.flatnonzero(mask)


def _treatment_queries(well_type, n: int) -> np.ndarray:
    types = np.asarray(well_type)
    if types.shape != (n,):
        raise ValueError(f"well_type must be 1-D of length {n}; got shape {types.shape}")
    return types == TREATMENT


def _check_int(x, name: str, low: int) -> int:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or int(x) < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {x!r}")
    return int(x)
