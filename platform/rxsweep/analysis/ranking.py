"""Rank a sweep's trials by held-out validation accuracy and batch mixing (`rxsweep rank`).

One row a trial: id, status, method, the searched hyperparameters, held-out validation accuracy
on treatment wells (top-1, top-5, plate-constrained; the RxRx1 competition's accuracy), replicate
retrieval of the treatment wells (mAP and the fraction of siRNAs retrieved), every well-level
batch-mixing score and `mixing` (the mean of rxsweep.metrics.mixing.COMPOSITE_KEYS),
Pareto-front membership on (heldout_val_acc, mixing), and the aggregate rank
(rxsweep.metrics.ranks). Below the trials' rows come the reference rows (reference_rows.py): each
completed ERM trial followed by sphering or Harmony, and the hand-made-features baseline, listed
after the trials and never ranked among them (they are yardsticks, not candidates):

    rank = mean(rank of heldout_val_acc, rank of mixing)      ranks 1 = best, ties averaged

over the rows that have both (every epoch reports its mixing, so trials stopped early are ranked
on their last epoch; failed trials are listed below the ranked ones). Ranks, not min-max scaled values: a new trial with an extreme score does
not rescale everyone else's. Held-out *test* accuracy is shown, never used to rank.

When a trial drew its epochs by adaptive resampling, the table also shows what AR did in its last
epoch (AR_KEYS: the weights' effective sample size as a share of the sites, and the largest
weight x N; 1 and 1 are uniform draws).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.analysis.reference_rows import REFERENCE_STATUSES, embeddings_rows, features_row, posthoc_rows
from rxsweep.analysis.sweep_folder import Sweep, Trial, load_sweep
from rxsweep.metrics.embedding_scores import MIXING_KEYS, plate_design, read_embeddings, retention_scores
from rxsweep.metrics.ranks import aggregate_rank, pareto_front
from rxsweep.training.run_files import SPLITS_FILE, read_splits

#: The two objectives of the ranking and of the Pareto front, both better when higher.
RANK_ON = ("heldout_val_acc", "mixing")
FORMATS = ("table", "csv", "json", "markdown")
#: Columns of trials that drew their epochs by adaptive resampling (rxsweep.training.resampler).
AR_KEYS = ("resampling", "ar_ess", "ar_max_weight")
#: Biology retention (rxsweep.metrics.embedding_scores.retention_scores); the share of siRNAs
#: retrieved beside the replicate mAP, as JUMP reports them.
RETENTION = ("heldout_val_top5", "heldout_val_plate_acc", "heldout_val_replicate_map",
             "heldout_val_retrieved_fraction")


def rank_sweep(sweep: Sweep | str | Path, retention: bool = True) -> pd.DataFrame:
    """The ranked table of a sweep (see the module docstring); `retention`: compute bio retention
    from each completed trial's embeddings (the slow part, skip it for a quick look)."""
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    rows = [_row(sweep, trial, retention) for trial in sweep.trials]
    if retention:  # the reference rows score embeddings too (reference_rows.py)
        rows += posthoc_rows(sweep, rows)
        rows += [row for row in [features_row(sweep)] if row is not None]
        rows += embeddings_rows(sweep)  # the user's own embeddings (--embeddings NAME=FILE)
    columns = ["trial_id", "status", "method", "domain_label", *[p for p in sweep.params if p != "domain_label"],
               "epochs", "heldout_val_acc", "heldout_val_acc_all", *RETENTION, *MIXING_KEYS, "heldout_test_acc"]
    if any(row.get("resampling") == "adaptive" for row in rows):
        columns += [k for k in AR_KEYS if k not in columns]
    if any(row.get("error") for row in rows):  # a trial's error is shown on its row
        columns.append("error")
    table = pd.DataFrame(rows).reindex(columns=columns) if rows else pd.DataFrame(columns=columns)
    return add_ranks(table)


def add_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """Add `pareto` and `rank` (rxsweep.metrics.ranks), sort best first (ranked trials, then the
    others by accuracy)."""
    table = table.copy()
    values = table[list(RANK_ON)].apply(pd.to_numeric, errors="coerce")
    reference = table["status"].isin(REFERENCE_STATUSES) if "status" in table else False
    values[reference] = math.nan  # reference rows are shown beside the trials, never ranked among them
    ranked = values.notna().all(axis=1)
    table["rank"] = aggregate_rank(values)
    table["pareto"] = False
    table.loc[ranked, "pareto"] = pareto_front(values[ranked].to_numpy())
    table["_acc"] = values["heldout_val_acc"]
    table["_reference"] = reference
    table = table.sort_values(["_reference", "rank", "_acc"], ascending=[True, True, False], na_position="last",
                              kind="stable")
    return table.drop(columns=["_acc", "_reference"]).reset_index(drop=True)


def _row(sweep: Sweep, trial: Trial, retention: bool) -> dict:
    last = trial.last
    row = {"trial_id": trial.trial_id, "status": trial.status, "method": trial.method,
           "domain_label": trial.config.get("domain_label"), "epochs": last.get("epoch", 0)}
    row.update({p: trial.params.get(p) for p in sweep.params if p != "domain_label"})
    row["resampling"] = trial.config.get("resampling", "none")
    for key in ("heldout_val_acc", "heldout_val_acc_all", "heldout_val_top5", "heldout_test_acc", *MIXING_KEYS,
                *AR_KEYS[1:]):
        value = last.get(key)
        row[key] = math.nan if value is None else value
    if trial.error:
        row["error"] = trial.error
    if retention and trial.embeddings is not None:
        try:
            row.update({k: v for k, v in _retention(trial).items() if k in (*RETENTION, "heldout_val_acc_all")})
        except (OSError, ValueError, KeyError) as exc:
            row["error"] = f"bio retention not computed: {exc}"
    return row


def _retention(trial: Trial) -> dict:
    """Bio-retention scores of a finished trial's embeddings, on the plate design of its own
    training split (its splits.parquet: the shards are never reopened)."""
    splits = read_splits(trial.path)
    if splits is None:
        raise FileNotFoundError(f"{trial.path / SPLITS_FILE} is missing (a run of an older rxsweep)")
    return retention_scores(read_embeddings(trial.embeddings), plate_design(splits))


def format_table(table: pd.DataFrame, fmt: str = "table") -> str:
    """The ranked table as a terminal table, CSV, JSON (records) or Markdown."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {list(FORMATS)}")
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        records = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        return json.dumps(records, indent=2, default=_json_default) + "\n"
    shown = _display(table)
    if fmt == "markdown":
        header = "| " + " | ".join(shown.columns) + " |"
        rule = "|" + "|".join("---" for _ in shown.columns) + "|"
        body = ["| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False)]
        return "\n".join([header, rule, *body]) + "\n"
    return shown.to_string(index=False) + "\n"


def format_cell(value) -> str:
    """A table cell as people read it: floats to 3 decimals (scientific when small), NaN and
    None as '-', True as '*' (the Pareto column)."""
    if isinstance(value, (bool, np.bool_)):
        return "*" if value else ""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "-"
        return f"{value:.2e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"
    return "-" if value is None else str(value)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.rename(columns={"pareto": "front", "mixing/silhouette_batch": "mixing/asw",
                                  "mixing/graph_connectivity": "mixing/gc"})
    return shown.apply(lambda column: column.map(format_cell))


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return str(value)
