"""A trial's end-of-training scores, from the held-out embeddings it wrote.

    mixing, mixing/<score>   batch_mixing_scores of one split's sites: batch = experiment,
                             labels = siRNA, strata = cell type (experiments of different cell
                             types are not expected to mix), CV groups = wells. Scored within cell
                             types that have >= 2 experiments in the split; NaN when none has
                             (a split with one experiment a cell type cannot show mixing).

The sweep optimises the ``heldout_val`` split's scores; the ``heldout_test`` ones are computed the
same way (prefixed ``heldout_test_``), for the report only. One definition, used in a sweep's
trials (the training loop calls :func:`end_of_run_scores` on its final embeddings and reports
them with the last epoch) and by the ranking, so the objective and the table never disagree.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from .mixing import SCORE_KEYS, batch_mixing_scores

MIXING_KEYS = ("mixing", *(f"mixing/{k}" for k in SCORE_KEYS))


def read_embeddings(path: str | Path) -> pd.DataFrame:
    """embeddings.parquet (see rxsweep.training.embeddings) as a DataFrame of numpy arrays."""
    return pq.read_table(path).to_pandas()


def stack(column: pd.Series, dtype=np.float32) -> np.ndarray:
    """A column of equal-length vectors -> a 2-D array."""
    if len(column) == 0:
        return np.zeros((0, 0), dtype)
    return np.stack(column.to_numpy()).astype(dtype, copy=False)


def end_of_run_scores(table) -> dict[str, float | str]:
    """Scores of a run's final embeddings (a pyarrow Table or DataFrame as embeddings.py writes it)."""
    frame = table if isinstance(table, pd.DataFrame) else table.to_pandas()
    scores = mixing_scores(frame, "heldout_val")
    scores.update({f"heldout_test_{k}": v for k, v in mixing_scores(frame, "heldout_test").items()})
    return scores


def mixing_scores(frame: pd.DataFrame, split: str = "heldout_val") -> dict[str, float | str]:
    """The MIXING_KEYS of one split's rows; NaN (and a ``mixing_note``) when they cannot be scored."""
    rows = frame[frame["split"] == split]
    nan = {key: math.nan for key in MIXING_KEYS}
    per_type = rows.groupby("cell_type")["experiment"].nunique()
    if rows.empty or (per_type < 2).all():
        return {**nan, "mixing_note": f"{split}: no cell type has 2 or more experiments to mix"}
    try:
        scores = batch_mixing_scores(stack(rows["embedding"]), rows["experiment"].to_numpy(),
                                     rows["label"].to_numpy(), rows["cell_type"].to_numpy(),
                                     groups=rows["well_id"].to_numpy())
    except ValueError as e:  # e.g. a cell type with fewer sites than the metrics' k
        return {**nan, "mixing_note": f"{split}: {e}"}
    out: dict[str, float | str] = {"mixing": scores["mixing"]}
    out.update({f"mixing/{key}": scores[key] for key in SCORE_KEYS})
    if scores["n_strata_skipped"]:
        out["mixing_note"] = (f"{split}: {scores['n_strata_skipped']} cell type(s) with one experiment "
                              "not scored")
    return out


def retention_scores(frame: pd.DataFrame, design: pd.DataFrame, split: str = "heldout_val") -> dict[str, float]:
    """Biology retained on one split (topk.py, plate_constrained.py, replicate_retrieval.py):
    top-1/top-5 from the stored log-probs, plate-constrained accuracy (uses the plate design:
    labelled ``plate_acc``; over all the split's sites, controls included, like ``{split}_acc``),
    and replicate retrieval mAP of well profiles (mean embedding of a well's sites) across
    experiments.

    ``design``: rows of labelled plates with plate_key, label and well_type, from which the plate
    groups and the control labels are read (the training plates, see plate_design()).
    """
    from .plate_constrained import infer_plate_groups, plate_constrained_accuracy
    from .replicate_retrieval import replicate_retrieval
    from .topk import topk_accuracy

    rows = frame[frame["split"] == split]
    if rows.empty:
        return {}
    log_probs, labels = stack(rows["log_probs"]), rows["label"].to_numpy()
    out = {f"{split}_top1": topk_accuracy(log_probs, labels, 1),
           f"{split}_top5": topk_accuracy(log_probs, labels, min(5, log_probs.shape[1]))}
    groups = infer_plate_groups(design)
    controls = sorted(design.loc[design["well_type"] == "positive_control", "label"].unique().tolist())
    negative = design.loc[design["well_type"] == "negative_control", "label"].unique().tolist()
    plate = plate_constrained_accuracy(
        log_probs, labels, (rows["experiment"] + "/" + rows["plate"].astype(str)).to_numpy(),
        rows["well"].to_numpy(), rows["well_type"].to_numpy(), groups, controls=controls or None,
        negative_label=int(negative[0]) if len(negative) == 1 else None)
    out[f"{split}_plate_acc"] = plate["plate_acc_all"]
    wells = rows.groupby("well_id", sort=True)
    profiles = np.stack([stack(group["embedding"]).mean(axis=0) for _, group in wells])
    first = wells.first()
    retrieval = replicate_retrieval(profiles, first["label"].to_numpy(), first["experiment"].to_numpy())
    out[f"{split}_replicate_map"] = retrieval["map"]
    out[f"{split}_replicate_chance"] = retrieval["chance"]
    return out


def plate_design(index_table: pd.DataFrame) -> pd.DataFrame:
    """plate_key, label, well_type of the labelled training sites of a run's splits (its
    splits.parquet, or a shard index table with its split column)."""
    train = index_table[(index_table["split"] == "train") & (index_table["label"] >= 0)]
    return pd.DataFrame({"plate_key": train["experiment"] + "/" + train["plate"].astype(str),
                         "label": train["label"].to_numpy(), "well_type": train["well_type"].to_numpy()})
