"""Rows of the ranking that are not search trials: the baselines a reviewer asks a DANN to beat.

    <trial> + sphering   a completed ERM trial's held-out validation well profiles whitened on
    <trial> + Harmony    each experiment's control wells, or corrected by Harmony
                         (rxsweep.metrics.posthoc): batch mixing and replicate retrieval
                         (replicate_map, retrieved_fraction, replicate_chance) are scored
                         again on the corrected profiles; accuracy is the trial's own (a post-hoc
                         correction of the embedding does not change the classifier's predictions)
    features + LR        the hand-made-features baseline (rxsweep.training.features_baseline):
                         accuracy of its predictions, mixing and replicate retrieval of its
                         standardised features' well profiles
    NAME                 each `--embeddings NAME=FILE` arm (rxsweep.training.embeddings_arm),
    NAME + Harmony       scored as features + LR, and again on its Harmony-corrected profiles

They follow the trials in the table (status `post-hoc` or `baseline`, never ranked among the
trials), so it shows at once whether a DANN beats ERM followed by a standard correction, and
whether the networks learned more than hand-made features.
"""

from __future__ import annotations

import math

import pandas as pd

from rxsweep.analysis.sweep_folder import Sweep
from rxsweep.metrics.embedding_scores import (mixing_scores, prediction_accuracies, read_embeddings,
                                              replicate_scores)
from rxsweep.metrics.posthoc import corrected_profiles
from rxsweep.metrics.well_profiles import well_profiles

SPLIT = "heldout_val"
REFERENCE_STATUSES = ("post-hoc", "baseline")
CORRECTIONS = {"sphering": "sphering", "harmony": "Harmony"}
FEATURES = "features + LR"
#: Labels of the reference rows' methods (the trials' are built from method and domain_label).
REFERENCE_LABELS = {"erm+sphering": "ERM + sphering", "erm+harmony": "ERM + Harmony", "features": FEATURES}
#: Methods of the user's embeddings arms: EMBEDDINGS_METHOD + NAME, and EMBEDDINGS_HARMONY_METHOD + NAME
#: for its Harmony-corrected twin (the verdict's arms carry the same methods).
EMBEDDINGS_METHOD = "embeddings:"
EMBEDDINGS_HARMONY_METHOD = "embeddings+harmony:"
#: The replicate-retrieval columns a reference row scores on its own profiles.
REPLICATE_KEYS = tuple(f"{SPLIT}_{k}" for k in ("replicate_map", "retrieved_fraction", "replicate_chance"))


def posthoc_rows(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """Two rows (sphering, Harmony) for every completed ERM trial with embeddings. ``rows``: the
    trials' own ranking rows, whose accuracy columns are copied."""
    by_id = {row["trial_id"]: row for row in rows}
    out = []
    for trial in sweep.trials:
        if trial.method != "erm" or trial.status != "completed" or trial.embeddings is None:
            continue
        wells = well_profiles(read_embeddings(trial.embeddings), SPLIT)
        for name, label in CORRECTIONS.items():
            row = {k: v for k, v in by_id[trial.trial_id].items() if k != "error"}
            row.update(trial_id=f"{trial.trial_id} + {label}", status="post-hoc", method=f"erm+{name}")
            try:
                row.update(_profile_scores(corrected_profiles(wells, name)))
            except ValueError as exc:  # e.g. an experiment with too few control wells to sphere
                # NaN, not the ERM trial's own numbers copied above: they would pass for corrected ones
                row.update({k: math.nan for k in row if k.startswith("mixing") or k in REPLICATE_KEYS},
                           error=f"{name}: {exc}")
            out.append(row)
    return out


def features_row(sweep: Sweep) -> dict | None:
    """The hand-made-features baseline's row, if the sweep computed it."""
    if sweep.features_baseline is None:
        return None
    table = read_embeddings(sweep.features_baseline)
    row = {"trial_id": FEATURES, "status": "baseline", "method": "features"}
    for split in ("heldout_val", "heldout_test"):
        row.update(prediction_accuracies(table, split))
    row.update(_profile_scores(well_profiles(table, SPLIT)))
    return row


def embeddings_rows(sweep: Sweep) -> list[dict]:
    """Two rows (NAME, NAME + Harmony) for each `--embeddings NAME=FILE` arm the sweep computed,
    as features_row (accuracy of the arm's predictions, kept by the Harmony row)."""
    out = []
    for name, path in sweep.embeddings_arms.items():
        table = read_embeddings(path)
        row = {"trial_id": name, "status": "baseline", "method": EMBEDDINGS_METHOD + name}
        for split in ("heldout_val", "heldout_test"):
            row.update(prediction_accuracies(table, split))
        wells = well_profiles(table, SPLIT)
        out.append({**row, **_profile_scores(wells)})
        harmony = {**row, "trial_id": f"{name} + Harmony", "method": EMBEDDINGS_HARMONY_METHOD + name}
        try:
            harmony.update(_profile_scores(corrected_profiles(wells, "harmony")))
        except ValueError as exc:
            harmony.update({k: math.nan for k in out[-1] if k.startswith("mixing") or k in REPLICATE_KEYS},
                           error=f"harmony: {exc}")
        out.append(harmony)
    return out


def reference_label(method) -> str | None:
    """A reference row's (or verdict arm's) label from its method: "ERM + sphering", "features + LR",
    "NAME", "NAME + Harmony"; None for a trial's method."""
    method = str(method)
    if method.startswith(EMBEDDINGS_METHOD):
        return method[len(EMBEDDINGS_METHOD):]
    if method.startswith(EMBEDDINGS_HARMONY_METHOD):
        return f"{method[len(EMBEDDINGS_HARMONY_METHOD):]} + Harmony"
    return REFERENCE_LABELS.get(method)


def _profile_scores(wells: pd.DataFrame) -> dict:
    """Mixing and replicate retrieval (REPLICATE_KEYS, as retention_scores computes them for a
    trial) of held-out validation well profiles (one row a well)."""
    scores = {k: v for k, v in mixing_scores(wells, SPLIT).items() if k != "mixing_note"}
    scores.update(replicate_scores(wells, SPLIT))
    return scores
