"""The report's adaptive-resampling figure: does AR help the cell types training saw little of?

The AR paper's question, asked of a sweep that searched ``resampling``: the best trial that drew
its epochs by adaptive resampling against the best that did not, of the same method when the
sweep has one (first in the ranking, i.e. by aggregate rank on the held-out validation
experiments), per cell type of those experiments:
treatment-well accuracy and cross-experiment replicate mAP (its chance level drawn as a tick).
Each cell type is labelled with its share of the training sites, so the under-represented ones
can be read off the axis. One seed each: the verdict's "+ AR" arm is the judgement with seeds and
intervals on test experiments; this is where to look for which cell types moved.
"""

from __future__ import annotations

import html

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rxsweep.analysis.sweep_folder import Sweep, Trial
from rxsweep.metrics.embedding_scores import cell_type_scores, read_embeddings
from rxsweep.training.run_files import read_splits

SPLIT = "heldout_val"
TITLE = "Adaptive resampling by cell type: best AR trial vs best plain-sampling trial (held-out validation)"
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


def _legend(kind: str, trial: Trial) -> str:
    epochs = len(trial.history)
    text = f"{NAMES[kind]} ({trial.trial_id}, {trial.method.upper()}, {epochs} epoch{'s' * (epochs != 1)}"
    if kind == "adaptive":
        drawn = max(0, epochs - int(trial.config.get("ar_warmup_epochs", 1)))
        text += f", {drawn} drawn by AR" if not trial.config.get("ar_weights_from") else ", weights from a file"
    return html.escape(text + ")")


def training_shares(trial: Trial) -> dict[str, float]:
    """Share of the trial's training sites of each cell type (from its splits.parquet)."""
    splits = read_splits(trial.path)
    if splits is None:
        return {}
    train = splits[splits["split"] == "train"]
    return (train["cell_type"].value_counts() / len(train)).to_dict() if len(train) else {}


def resampling_figure(sweep: Sweep, table: pd.DataFrame) -> go.Figure:
    best = best_by_resampling(sweep, table)
    if "adaptive" not in best or "none" not in best:
        missing = "no adaptive-resampling trial" if "adaptive" not in best else "no plain-sampling trial"
        return _empty(f"{missing} with held-out embeddings: set resampling: {{choice: [none, adaptive]}} "
                      "under parameters to compare them")
    scores = {kind: cell_type_scores(read_embeddings(trial.embeddings), SPLIT).set_index("cell_type")
              for kind, trial in best.items() if kind in COLORS}
    shares = training_shares(best["none"])
    cell_types = sorted(set(scores["none"].index) | set(scores["adaptive"].index))
    ticks = [f"{c} ({shares[c]:.0%} of training)" if c in shares else c for c in cell_types]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("treatment accuracy", "replicate mAP across experiments (tick: chance)"))
    for kind in ("none", "adaptive"):
        trial, frame = best[kind], scores[kind].reindex(cell_types)
        name = _legend(kind, trial)
        for col, metric in ((1, "acc"), (2, "replicate_map")):
            fig.add_trace(go.Bar(x=ticks, y=frame[metric], name=name, legendgroup=kind, showlegend=col == 1,
                                 marker_color=COLORS[kind],
                                 hovertext=[f"{html.escape(c)}: {v:.3f} ({int(w)} wells)" if v == v else "n/a"
                                            for c, v, w in zip(cell_types, frame[metric], frame["wells"].fillna(0))],
                                 hoverinfo="text"), row=1, col=col)
    chance = scores["none"].reindex(cell_types)["replicate_chance"]
    fig.add_trace(go.Scatter(x=ticks, y=chance, mode="markers", name="mAP chance", marker={"symbol": "line-ew-open",
                             "size": 28, "color": "#444"}, hoverinfo="skip"), row=1, col=2)
    fig.update_layout(title=TITLE, barmode="group", height=420)
    return fig


def _empty(text: str) -> go.Figure:
    fig = go.Figure(layout={"title": TITLE, "xaxis": {"visible": False}, "yaxis": {"visible": False}, "height": 320})
    fig.add_annotation(text=html.escape(text), x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14})
    return fig
