"""Well profiles, and batch mixing scored on them.

A well profile is the mean of its sites' vectors (the unit image-based profiling scores batch
correction on; Arevalo et al., Nat Commun 2024):

    profile_w = (1 / n_w) sum_{sites s of w} embedding_s            n_w = the well's site count

Why wells and not sites: the two sites of a well share the well (same siRNA, same cells' culture,
same position) and *should* agree. Scored per site, each site's nearest neighbour is its sibling,
always from the same batch, so a kNN mixing score punishes an embedding for the agreement it
should have. On profiles each well is one point and that artefact is gone.

    well_mixing_scores    batch_mixing_scores (metrics/mixing/scores.py) on one split's profiles:
                          batch = experiment, strata = cell type (also the label of the batch
                          silhouette and graph connectivity, as scib), each profile its own CV
                          group, neighbour counts from :func:`mixing_k`; ``mixing`` = the mean of
                          mixing.COMPOSITE_KEYS.

Neighbour counts (:func:`mixing_k`), from n_min = the profile count of the smallest scored stratum
(a cell type with >= 2 experiments in the split), q = n_min // 4:

    k_ilisi    = min(90, q)        scib / scib-metrics iLISI default 90
    perplexity = k_ilisi / 3       scib's ratio (30 for 90; Harmony's LISI asks 3 x perplexity
                                   neighbours); always < k_ilisi, as the entropy calibration needs
    k_kbet     = min(50, q)        scib-metrics kBET default 50; scib's per-label kBET takes a
                                   quarter of the mean batch size as k0 too
    k_graph    = min(15, q)        scib graph connectivity default 15
    refused (ValueError) when q < 3, i.e. n_min < 12

Why a quarter: a neighbourhood shows mixing only if it is a small part of what it is drawn from.
At 63% of a stratum (k = 90 of 144 sites, the tiny preset's per-site case) every neighbourhood
holds most of both experiments whatever the embedding does, so a separated embedding cannot
score low. With k at most n_min / 4 and two experiments of a cell type (the usual held-out
case), a neighbourhood fits inside one experiment's half, so complete separation can reach 0 and
complete mixing 1. On large strata (n_min >= 360) the published defaults are used unchanged.
Below 3 neighbours (perplexity 1) the scores measure single neighbours, noise: not scored.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

__all__ = ["MIXING_PARAMETER_KEYS", "MIN_NEIGHBOURS", "WELL_COLUMNS", "mixing_k", "mixing_parameters", "stack",
           "well_mixing_scores", "well_profiles"]

#: Per-well columns kept by well_profiles (constant over a well's sites; checked).
WELL_COLUMNS = ("well_id", "experiment", "plate", "well", "cell_type", "well_type", "split", "label")
#: The parameters well_mixing_scores reports beside the scores (NaN / 0 when nothing was scored).
MIXING_PARAMETER_KEYS = ("mixing/k_ilisi", "mixing/perplexity", "mixing/k_kbet", "mixing/k_graph",
                         "mixing/n_profiles")
#: The fewest neighbours a score is computed with (q = n_min // 4 must reach it).
MIN_NEIGHBOURS = 3
_DEFAULT_K = {"k_ilisi": 90, "k_kbet": 50, "k_graph": 15}  # the published defaults (module doc)


def stack(column: pd.Series, dtype=np.float32) -> np.ndarray:
    """A column of equal-length vectors -> a 2-D array."""
    if len(column) == 0:
        return np.zeros((0, 0), dtype)
    return np.stack(column.to_numpy()).astype(dtype, copy=False)


def well_profiles(frame: pd.DataFrame, split: str | None = None, column: str = "embedding") -> pd.DataFrame:
    """One row a well: the mean of its sites' ``column`` vectors (module doc), sorted by well_id.

    Args:
        frame: one row a site, as embeddings.parquet (rxsweep.training.embeddings): needs the
            WELL_COLUMNS and ``column``; other columns are dropped.
        split: keep only rows of this split (None = every row).
        column: the vector column averaged (e.g. "log_probs"); the result keeps its name. Means
            are accumulated in float64 and stored as one float32 array a row.

    Returns:
        DataFrame with WELL_COLUMNS, ``n_sites`` (int64) and ``column``; an empty frame with those
        columns when no row matches.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a pandas DataFrame; got {type(frame).__name__}")
    if not isinstance(column, str) or column in WELL_COLUMNS or column == "n_sites":
        raise ValueError(f"column must name a vector column other than {[*WELL_COLUMNS, 'n_sites']}; got {column!r}")
    missing = [c for c in (*WELL_COLUMNS, column) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}")
    rows = frame if split is None else frame[frame["split"] == split]
    out_columns = [*WELL_COLUMNS, "n_sites", column]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in out_columns})
    if rows["well_id"].isna().any():
        raise ValueError("frame.well_id contains missing values")
    codes, _ = pd.factorize(rows["well_id"], sort=True)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    counts = np.diff(np.r_[starts, len(order)])
    try:
        vectors = stack(rows[column], np.float64)
    except ValueError as e:  # ragged vectors
        raise ValueError(f"frame.{column} must hold vectors of one length: {e}") from None
    if vectors.ndim != 2:
        raise ValueError(f"frame.{column} must hold 1-D vectors; got stacked shape {vectors.shape}")
    means = np.add.reduceat(vectors[order], starts, axis=0) / counts[:, None]
    meta = rows[list(WELL_COLUMNS)].iloc[order]
    per_well = meta.groupby(codes[order], sort=True)
    varying = [c for c in WELL_COLUMNS[1:] if (per_well[c].nunique(dropna=False) > 1).any()]
    if varying:
        raise ValueError(f"frame columns {varying} differ between sites of one well (well_id)")
    out = meta.iloc[starts].reset_index(drop=True)
    out["n_sites"] = counts.astype(np.int64)
    out[column] = list(means.astype(np.float32))
    return out[out_columns]


def mixing_k(n_min: int) -> dict:
    """Neighbour counts for a smallest scored stratum of ``n_min`` profiles (rule in the module doc).

    Returns {"k_ilisi": int, "perplexity": float, "k_kbet": int, "k_graph": int}; each k <= n_min / 4.
    Raises ValueError (naming n_min) when n_min // 4 < MIN_NEIGHBOURS.
    """
    if isinstance(n_min, bool) or not isinstance(n_min, numbers.Integral):
        raise ValueError(f"n_min must be an integer; got {n_min!r}")
    q = int(n_min) // 4
    if q < MIN_NEIGHBOURS:
        raise ValueError(f"n_min={n_min} is too small: a neighbourhood of at most a quarter of the "
                         f"stratum must hold >= {MIN_NEIGHBOURS} profiles (n_min >= {4 * MIN_NEIGHBOURS})")
    k = {name: min(default, q) for name, default in _DEFAULT_K.items()}
    return {"k_ilisi": k["k_ilisi"], "perplexity": k["k_ilisi"] / 3.0, "k_kbet": k["k_kbet"],
            "k_graph": k["k_graph"]}


def mixing_parameters(wells: pd.DataFrame) -> dict:
    """The neighbour counts and probe folds of well profiles ``wells`` (module doc), from the
    smallest cell type with 2 or more experiments: {"k_ilisi", "perplexity", "k_kbet", "k_graph",
    "n_splits", "n_profiles"}. Raises ValueError (the note to report) when nothing can be scored."""
    per_type = wells.groupby("cell_type")["experiment"].nunique()
    scored_types = per_type.index[per_type >= 2]
    if wells.empty or scored_types.empty:
        raise ValueError("no cell type has 2 or more experiments to mix")
    sizes = wells["cell_type"].value_counts().loc[scored_types]
    try:
        k = mixing_k(int(sizes.min()))
    except ValueError as e:
        raise ValueError(f"cell type {sizes.idxmin()!r} has too few well profiles to mix ({e})") from None
    return {**k, "n_splits": max(2, min(5, int(sizes.min()))), "n_profiles": int(sizes.sum())}


def well_mixing_scores(frame: pd.DataFrame, split: str = "heldout_val", *, seed: int = 0) -> dict[str, float | str]:
    """Batch mixing of one split's well profiles (module doc).

    Returns ``mixing`` (mean of mixing.COMPOSITE_KEYS), ``mixing/<score>`` for each of
    mixing.SCORE_KEYS, the MIXING_PARAMETER_KEYS (k's and perplexity used;
    ``mixing/n_profiles`` = profiles in the scored strata, an int), and
    ``mixing_note`` when something was not scored: NaN scores when no cell type has 2 or more
    experiments or the smallest such cell type has too few profiles for mixing_k; a note only
    when some cell types (with one experiment) were skipped.
    """
    from .mixing import SCORE_KEYS, batch_mixing_scores  # torch (kNN), only when scoring

    nan = {"mixing": math.nan, **{f"mixing/{k}": math.nan for k in SCORE_KEYS},
           **{k: math.nan for k in MIXING_PARAMETER_KEYS}, "mixing/n_profiles": 0}
    wells = well_profiles(frame, split)
    try:
        k = mixing_parameters(wells)
    except ValueError as e:
        per_type = wells.groupby("cell_type")["experiment"].nunique()
        n_scored = int(wells["cell_type"].isin(per_type.index[per_type >= 2]).sum()) if not wells.empty else 0
        return {**nan, "mixing/n_profiles": n_scored, "mixing_note": f"{split}: {e}"}
    try:
        scores = batch_mixing_scores(
            stack(wells["embedding"]), wells["experiment"].to_numpy(), strata=wells["cell_type"].to_numpy(),
            groups=None, ilisi_k=k["k_ilisi"], perplexity=k["perplexity"],
            kbet_k=k["k_kbet"], gc_k=k["k_graph"], n_splits=k["n_splits"], seed=seed)
    except ValueError as e:  # e.g. non-finite embeddings
        return {**nan, "mixing/n_profiles": k["n_profiles"], "mixing_note": f"{split}: {e}"}
    out: dict[str, float | str] = {"mixing": scores["mixing"]}
    out.update({f"mixing/{key}": scores[key] for key in SCORE_KEYS})
    out.update({"mixing/k_ilisi": k["k_ilisi"], "mixing/perplexity": k["perplexity"],
                "mixing/k_kbet": k["k_kbet"], "mixing/k_graph": k["k_graph"], "mixing/n_profiles": k["n_profiles"]})
    if scores["n_strata_skipped"]:
        out["mixing_note"] = (f"{split}: {scores['n_strata_skipped']} cell type(s) with one experiment "
                              "not scored")
    return out
