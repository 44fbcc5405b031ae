"""The report's adaptive-resampling figure: does AR help the cell types training saw little of?

The AR paper's question, asked of a sweep that searched ``resampling``: adaptive resampling against
plain sampling, per cell type, in treatment-well accuracy and cross-experiment replicate mAP (its
chance level drawn as a tick). Compared are the verdict's runs when the sweep has them (the AR
group's confirmation runs and those of its method's plain group: finished, every seed averaged,
on the test experiments), else the best trial of each in the ranking (the plain one of the AR
trial's method when there is one), on the validation experiments. Each cell type is labelled
with its share of the training sites, so the under-represented ones can be read off the axis.
The verdict's "+ AR" arm gives the intervals; this is where to look for which cell types moved.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rxsweep.analysis.sweep_folder import Sweep, Trial
from rxsweep.metrics.embedding_scores import cell_type_scores, read_embeddings
from rxsweep.training.run_files import read_splits
from rxsweep.tuning.sweep_files import AR_GROUP

TITLE = "Adaptive resampling by cell type, against plain sampling"
COLORS = {"none": "#636efa", "adaptive": "#ef553b"}
NAMES = {"none": "plain sampling", "adaptive": "adaptive resampling"}


def best_by_resampling(sweep: Sweep, table: pd.DataFrame) -> dict[str, Trial]:
    """{"adaptive": the first trial of the ranked ``table`` that drew its epochs by AR, "none": the
    first that did not, of the same method when there is one (so the bars differ by the sampling,
    not by the adversary)}; trials without held-out embeddings are skipped."""
    by_id = {t.trial_id: t for t in sweep.trials}
    ranked = [by_id[i] for i in table["trial_id"] if i in by_id and by_id[i].embeddings is not None]
    best: dict[str, Trial] = {}
    for trial in ranked:
        best.setdefault(trial.config.get("resampling", "none"), trial)
    if "adaptive" in best:
        same = [t for t in ranked if t.config.get("resampling", "none") == "none"
                and t.method == best["adaptive"].method]
        if same:
            best["none"] = same[0]
    return best


def compared_runs(sweep: Sweep, table: pd.DataFrame) -> tuple[dict[str, list[Trial]], str, str]:
    """({"none" | "adaptive": runs}, split, what they are). The confirmation runs of the AR group
    and of its method's plain group, every finished seed, on the test experiments (what the
    verdict judges: finished runs, several seeds), when the sweep has them; else the best trial of
    each from the ranking, on the validation experiments."""
    record = sweep.confirm_record
    base = (record.get(AR_GROUP) or {}).get("base_method")
    if base in record:
        by_id = {t.trial_id: t for t in [*sweep.trials, *sweep.confirm]}
        runs = {kind: [by_id[i] for i in record[group].get("trial_ids", []) if i in by_id
                       and by_id[i].status == "completed" and by_id[i].embeddings is not None]
                for kind, group in (("adaptive", AR_GROUP), ("none", base))}
        if all(runs.values()):
            return runs, "heldout_test", "confirmation runs"
    return {k: [t] for k, t in best_by_resampling(sweep, table).items()}, "heldout_val", "best trial of the ranking"


def training_shares(trial: Trial) -> dict[str, float]:
    """Share of the trial's training sites of each cell type (from its splits.parquet)."""
    splits = read_splits(trial.path)
    if splits is None:
        return {}
    train = splits[splits["split"] == "train"]
    return (train["cell_type"].value_counts() / len(train)).to_dict() if len(train) else {}


def mean_scores(runs: list[Trial], split: str) -> pd.DataFrame:
    """cell_type_scores of each run's embeddings on ``split``, averaged over the runs (seeds)."""
    frames = [cell_type_scores(read_embeddings(t.embeddings), split) for t in runs]
    return pd.concat(frames).groupby("cell_type").mean(numeric_only=True)


def _legend(kind: str, runs: list[Trial]) -> str:
    first = runs[0]
    if len(runs) > 1:
        text = f"{NAMES[kind]} ({first.method.upper()}, {len(runs)} seeds)"
    else:
        epochs = len(first.history)
        text = f"{NAMES[kind]} ({first.trial_id}, {first.method.upper()}, {epochs} epoch{'s' * (epochs != 1)}"
        if kind == "adaptive":
            drawn = max(0, epochs - int(first.config.get("ar_warmup_epochs", 1)))
            text += f", {drawn} drawn by AR" if not first.config.get("ar_weights_from") else ", weights from a file"
        text += ")"
    return html.escape(text)


def resampling_figure(sweep: Sweep, table: pd.DataFrame) -> go.Figure:
    runs, split, source = compared_runs(sweep, table)
    if "adaptive" not in runs or "none" not in runs:
        missing = "no adaptive-resampling trial" if "adaptive" not in runs else "no plain-sampling trial"
        return _empty(f"{missing} with held-out embeddings: set resampling: {{choice: [none, adaptive]}} "
                      "under parameters to compare them")
    scores = {kind: mean_scores(runs[kind], split) for kind in COLORS}
    shares = training_shares(runs["none"][0])
    cell_types = sorted(set(scores["none"].index) | set(scores["adaptive"].index))
    ticks = [f"{c} ({shares[c]:.0%} of training)" if c in shares else c for c in cell_types]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("treatment accuracy", "replicate mAP across experiments (tick: chance)"))
    for kind in ("none", "adaptive"):
        frame = scores[kind].reindex(cell_types)
        for col, metric in ((1, "acc"), (2, "replicate_map")):
            fig.add_trace(go.Bar(x=ticks, y=frame[metric], name=_legend(kind, runs[kind]), legendgroup=kind,
                                 showlegend=col == 1, marker_color=COLORS[kind],
                                 hovertext=[f"{html.escape(c)}: {v:.3f} ({w:.0f} wells)" if v == v else "n/a"
                                            for c, v, w in zip(cell_types, frame[metric], frame["wells"].fillna(0))],
                                 hoverinfo="text"), row=1, col=col)
    chance = scores["none"].reindex(cell_types)["replicate_chance"]
    fig.add_trace(go.Scatter(x=ticks, y=chance, mode="markers", name="mAP chance", marker={"symbol": "line-ew-open",
                             "size": 28, "color": "#444"}, hoverinfo="skip"), row=1, col=2)
    fig.update_layout(title=f"{TITLE} ({source}, {split} experiments)", barmode="group", height=420)
    return fig


def _empty(text: str) -> go.Figure:
    fig = go.Figure(layout={"title": TITLE, "xaxis": {"visible": False}, "yaxis": {"visible": False}, "height": 320})
    fig.add_annotation(text=html.escape(text), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14})
    return fig
