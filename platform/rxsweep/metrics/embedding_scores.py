"""A trial's end-of-training scores, from the held-out embeddings it wrote.

    mixing, mixing/<score>   batch_mixing_scores of one split's *well profiles* (mean of a well's
                             sites; well_profiles.py says why and how the neighbour counts follow
                             the stratum size): batch = experiment, strata = cell type
                             (experiments of different cell types are not expected to mix; the cell
                             type is also the label of the label-aware scores, as scib); ``mixing``
                             = mean of mixing.COMPOSITE_KEYS (silhouette_batch reported, not in it).
                             Scored within cell types that have >= 2 experiments in the split; NaN
                             when none has (a split with one experiment a cell type cannot show
                             mixing) or when the smallest has fewer than 12 well profiles.
    mixing/k_ilisi, ...      MIXING_PARAMETER_KEYS: the neighbour counts and perplexity used, and
                             the number of profiles scored.

    {split}_replicate_map, {split}_retrieved_fraction, {split}_replicate_chance
                             replicate_scores of each held-out split (treatment queries, copairs).

The sweep optimises the ``heldout_val`` split's mixing; the ``heldout_test`` ones are computed the
same way (prefixed ``heldout_test_``), for the report only. One definition, used in a sweep's
trials (the training loop calls :func:`epoch_scores` on its final embeddings and reports
them with the last epoch) and by the ranking, so the objective and the table never disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .mixing import SCORE_KEYS
from .well_profiles import MIXING_PARAMETER_KEYS, stack, well_mixing_scores, well_profiles

MIXING_KEYS = ("mixing", *(f"mixing/{k}" for k in SCORE_KEYS))
__all__ = ["MIXING_KEYS", "MIXING_PARAMETER_KEYS", "epoch_scores", "mixing_scores", "plate_design",
           "prediction_accuracies", "read_embeddings", "replicate_scores", "retention_scores", "stack",
           "cell_type_scores"]


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """embeddings.parquet (see rxsweep.training.embeddings) as a DataFrame of numpy arrays."""
    return pq.read_table(path).to_pandas()


def epoch_scores(table) -> dict[str, float | str]:
    """Scores of an epoch's held-out embeddings (a pyarrow Table or DataFrame as embeddings.py
    writes it), for its line of metrics.jsonl: the mixing of each held-out split, and its
    replicate retrieval (replicate_scores: treatment-query mAP, the fraction of siRNAs retrieved,
    chance; ~0.2 s a split of 288 wells, most of it copairs' permutation nulls)."""
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    scores = mixing_scores(frame, "heldout_val")
    scores.update({f"heldout_test_{k}": v for k, v in mixing_scores(frame, "heldout_test").items()})
    for split in ("heldout_val", "heldout_test"):
        wells = well_profiles(frame, split)
        if not wells.empty:
            scores.update(replicate_scores(wells, split))
    return scores


def prediction_accuracies(frame: pd.DataFrame, split: str) -> dict[str, float]:
    """``{split}_acc`` over treatment sites and ``{split}_acc_all`` over every site of one split,
    from the stored ``prediction`` column (for a table without log-probs that mean anything, such
    as the features baseline's); NaN where there is no row to score. retention_scores computes
    the same two from the log-probs."""
    rows = frame[frame["split"] == split]
    treat = rows[rows["well_type"] == "treatment"]
    return {f"{split}_acc": _hit_rate(treat), f"{split}_acc_all": _hit_rate(rows)}


def _hit_rate(rows: pd.DataFrame) -> float:
    return float((rows["prediction"] == rows["label"]).mean()) if len(rows) else math.nan


def mixing_scores(frame: pd.DataFrame, split: str = "heldout_val") -> dict[str, float | str]:
    """The MIXING_KEYS and MIXING_PARAMETER_KEYS of one split's well profiles (well_mixing_scores);
    NaN (and a ``mixing_note``) when they cannot be scored."""
    return well_mixing_scores(frame, split)


def retention_scores(frame: pd.DataFrame, design: pd.DataFrame, split: str = "heldout_val") -> dict[str, float]:
    """Biology retained on one split (topk.py, plate_constrained.py, replicate_retrieval.py).

    Accuracy is treatment-well accuracy, as in the RxRx1 competition (and as the training loop's
    ``{split}_acc``, training/evaluate.py): the controls are a few easy classes that fill a large
    share of every plate. Per site, from the stored log-probs:

        {split}_acc            top-1 over treatment sites (well_type == "treatment")
        {split}_top5           top-5 over treatment sites
        {split}_acc_all        top-1 over every site
        {split}_acc_controls   top-1 over control sites (positive and negative)
        {split}_plate_acc      plate-constrained accuracy over treatment sites (uses the plate
                               design: report it apart; its ``plate_acc``)
        {split}_replicate_map          replicate mAP of well profiles (well_profiles()):
                                       treatment wells query, wells of other experiments
                                       (controls included) are the candidates
        {split}_retrieved_fraction     share of its treatment siRNAs whose BH-corrected
                                       permutation p-value is < 0.05 (copairs)
        {split}_replicate_chance       the mAP of a random ranking of the same queries
                                       (replicate_retrieval.replicate_map has the formulas)

    A figure with no rows to score (no control sites, one experiment for retrieval) is NaN.

    ``design``: rows of labelled plates with plate_key, label and well_type, from which the plate
    groups and the control labels are read (the training plates, see plate_design()).
    """
    from .plate_constrained import infer_plate_groups, plate_constrained_accuracy
    from .topk import topk_accuracy

    rows = frame[frame["split"] == split]
    if rows.empty:
        return {}
    log_probs, labels = stack(rows["log_probs"]), rows["label"].to_numpy()
    treat = (rows["well_type"] == "treatment").to_numpy()

    def top(mask: np.ndarray, k: int) -> float:
        return topk_accuracy(log_probs[mask], labels[mask], min(k, log_probs.shape[1])) if mask.any() else math.nan

    out = {f"{split}_acc": top(treat, 1), f"{split}_top5": top(treat, 5),
           f"{split}_acc_all": top(np.ones_like(treat), 1), f"{split}_acc_controls": top(~treat, 1)}
    groups = infer_plate_groups(design)
    controls = sorted(design.loc[design["well_type"] == "positive_control", "label"].unique().tolist())
    negative = design.loc[design["well_type"] == "negative_control", "label"].unique().tolist()
    if treat.any():
        plate = plate_constrained_accuracy(
            log_probs, labels, (rows["experiment"] + "/" + rows["plate"].astype(str)).to_numpy(),
            rows["well"].to_numpy(), rows["well_type"].to_numpy(), groups, controls=controls or None,
            negative_label=int(negative[0]) if len(negative) == 1 else None)
        out[f"{split}_plate_acc"] = plate["plate_acc"]  # treatment sites only
    else:
        out[f"{split}_plate_acc"] = math.nan
    out.update(replicate_scores(well_profiles(rows), split))
    return out


def replicate_scores(wells: pd.DataFrame, split: str = "heldout_val") -> dict[str, float]:
    """``{split}_replicate_map``, ``{split}_retrieved_fraction`` and ``{split}_replicate_chance``
    of one split's well profiles (a well_profiles() frame; retention_scores says what they are);
    NaN with fewer than 2 experiments or no treatment well with a replicate in another one."""
    from .replicate_retrieval import replicate_map

    scores = {"map": math.nan, "retrieved_fraction": math.nan, "chance": math.nan}
    if wells["experiment"].nunique() >= 2:
        scores = replicate_map(stack(wells["embedding"]), wells["label"].to_numpy(), wells["experiment"].to_numpy(),
                               wells["well_type"].to_numpy())
    return {f"{split}_replicate_map": scores["map"], f"{split}_retrieved_fraction": scores["retrieved_fraction"],
            f"{split}_replicate_chance": scores["chance"]}


def cell_type_scores(frame: pd.DataFrame, split: str = "heldout_val") -> pd.DataFrame:
    """One row a cell type of one split: ``acc`` (top-1 of its treatment sites, from the stored
    ``prediction``), ``replicate_map`` and ``replicate_chance`` (replicate retrieval of its well
    profiles across its experiments, treatment wells as queries, as retention_scores; NaN with
    one experiment), ``wells``, ``experiments``.
    Does a method help a cell type that training saw little of? (adaptive resampling's question)"""
    from .replicate_retrieval import TREATMENT, replicate_retrieval

    rows = frame[frame["split"] == split]
    out = []
    for cell_type, sites in rows.groupby("cell_type", sort=True):
        treat = sites[sites["well_type"] == "treatment"]
        wells = well_profiles(sites)
        retrieval = {"map": math.nan, "chance": math.nan}
        if wells["experiment"].nunique() >= 2:
            retrieval = replicate_retrieval(stack(wells["embedding"]), wells["label"].to_numpy(),
                                            wells["experiment"].to_numpy(),
                                            queries=(wells["well_type"] == TREATMENT).to_numpy())
        out.append({"cell_type": cell_type, "acc": _hit_rate(treat), "replicate_map": retrieval["map"],
                    "replicate_chance": retrieval["chance"], "wells": len(wells),
                    "experiments": int(sites["experiment"].nunique())})
    return pd.DataFrame(out, columns=["cell_type", "acc", "replicate_map", "replicate_chance", "wells",
                                      "experiments"])


def plate_design(index_table: pd.DataFrame) -> pd.DataFrame:
    """plate_key, label, well_type of the labelled training sites of a run's splits (its
    splits.parquet, or a shard index table with its split column)."""
    train = index_table[(index_table["split"] == "train") & (index_table["label"] >= 0)]
    return pd.DataFrame({"plate_key": train["experiment"] + "/" + train["plate"].astype(str),
                         "label": train["label"].to_numpy(), "well_type": train["well_type"].to_numpy()})
