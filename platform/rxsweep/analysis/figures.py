"""The report's figures, one plotly Figure a question, built from a sweep folder and its ranked table.

    pareto       accuracy on held-out experiments against their batch mixing, front drawn as steps
    parallel     which hyperparameter values lead to high held-out accuracy
    curves       how each trial learned (held-out accuracy, training loss) epoch by epoch
    importance   Optuna's hyperparameter importances, one panel an objective
    embeddings   t-SNE of the held-out embeddings of the best DANN and ERM trials, by batch and
                 by cell type: does the model still see the experiment?
    resampling   per cell type, the best adaptive-resampling trial against the best plain one
                 (resampling_figure.py): does AR help the cell types training saw little of?

Nothing here reads a file the sweep did not write, and nothing is written: see report.py.
"""

from __future__ import annotations

import html
import math
import warnings

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from rxsweep.analysis.ranking import RANK_ON
from rxsweep.analysis.reference_rows import REFERENCE_STATUSES, reference_label
from rxsweep.analysis.resampling_figure import resampling_figure
from rxsweep.analysis.sweep_folder import Sweep
from rxsweep.metrics.embedding_scores import read_embeddings, stack

FIGURES = ("pareto", "parallel", "curves", "importance", "embeddings", "resampling")
#: PED-ANOVA (Optuna's default evaluator) contrasts the top 10 % of completed trials with all of
#: them; below 11 trials that top decile is a single trial, every value it drew looks important
#: and the bars are noise. fANOVA's random forest is no better on a handful of points.
MIN_IMPORTANCE_TRIALS = 11
#: t-SNE is O(n log n) and SVG scatter plots slow down past a few thousand points a panel: larger
#: held-out splits are subsampled (seeded), and the panel title says so.
MAX_EMBEDDING_POINTS = 3000
SEED = 0
METHOD_COLORS = {"ERM": "#636efa", "DANN-plate": "#ef553b", "DANN-experiment": "#00cc96",
                 "CDANN-plate": "#ab63fa", "CDANN-experiment": "#ffa15a", "ERM + sphering": "#19d3f3",
                 "ERM + Harmony": "#ff6692", "features + LR": "#7f7f7f"}
#: The trial methods whose best trial the embedding figure shows, in panel order.
TRIAL_METHODS = ("dann", "cdann", "erm")


def method_label(method, domain_label=None) -> str:
    """'ERM', '<DANN|CDANN>-<domain>', or a reference row's label, from a row's method and domain_label."""
    if reference_label(method) is not None:  # a post-hoc, features or --embeddings row
        return reference_label(method)
    if method in (None, "erm") or method != method or domain_label in (None, "none") or domain_label != domain_label:
        return "ERM"
    return f"{str(method).upper()}-{domain_label}"


def build_figures(sweep: Sweep, table: pd.DataFrame) -> dict[str, go.Figure]:
    """The report's figures in FIGURES order; `table` is rank_sweep(sweep)."""
    study = load_study(sweep)
    return {
        "pareto": pareto_figure(sweep, table),
        "parallel": parallel_figure(sweep, table, log_params(sweep, study)),
        "curves": curves_figure(sweep),
        "importance": importance_figure(study, [o.get("metric", f"objective {i}") for i, o in
                                                enumerate(sweep.objectives)], reason=_no_study(sweep)),
        "embeddings": embeddings_figure(sweep, table),
        "resampling": resampling_figure(sweep, table),
    }


def load_study(sweep: Sweep):
    """The sweep's Optuna study, or None when optuna.db is missing or unreadable."""
    if sweep.optuna_storage is None:
        return None
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=sweep.name, storage=sweep.optuna_storage)
    except Exception:  # noqa: BLE001 - a missing study or a locked/old database: report without it
        return None


def _no_study(sweep: Sweep) -> str:
    if sweep.optuna_storage is None:
        return "the sweep folder has no optuna.db"
    return f"optuna.db holds no readable study named {sweep.name!r}"


def log_params(sweep: Sweep, study=None) -> set[str]:
    """Searched parameters drawn on a log scale (Optuna's distributions, else space.yaml)."""
    found = set()
    if study is not None:
        for trial in study.get_trials(deepcopy=False):
            found |= {name for name, dist in trial.distributions.items() if getattr(dist, "log", False)}
        return found
    from rxsweep import yamlio

    try:
        space = yamlio.safe_load((sweep.path / "space.yaml").read_text()) or {}
    except (OSError, ValueError):
        return found
    for name, spec in (space.get("parameters") or {}).items():
        if isinstance(spec, dict) and ("loguniform" in spec or spec.get("log")):
            found.add(name)
    return found


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        return f"{value:.2e}" if 0 < abs(value) < 1e-2 else f"{value:.3f}"
    return str(value)


def _labels(table: pd.DataFrame) -> pd.Series:
    if not len(table):
        return pd.Series([], dtype=object)
    return pd.Series([method_label(m, d) for m, d in zip(table["method"], table["domain_label"])], index=table.index)


def _color(label: str, i: int) -> str:
    return METHOD_COLORS.get(label, qualitative.Plotly[(i + 3) % len(qualitative.Plotly)])


def _note(fig: go.Figure, text: str, y: float = 0.5) -> go.Figure:
    fig.add_annotation(text=html.escape(text), x=0.5, y=y, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14})
    return fig


def _empty(title: str, text: str) -> go.Figure:
    fig = go.Figure(layout={"title": title, "xaxis": {"visible": False}, "yaxis": {"visible": False},
                            "height": 320})
    return _note(fig, text)


def pareto_figure(sweep: Sweep, table: pd.DataFrame) -> go.Figure:
    x, y = RANK_ON
    title = f"Held-out accuracy vs batch mixing ({x} / {y}; both higher = better)"
    values = table[[x, y]].apply(pd.to_numeric, errors="coerce") if len(table) else table
    ranked = table[values.notna().all(axis=1)] if len(table) else table
    if ranked.empty:
        return _empty(title, "no trial has both scores yet (each epoch reports them; none has finished one)")
    params = [p for p in sweep.params if p in ranked.columns]
    labels = _labels(ranked)
    fig = go.Figure()
    for i, label in enumerate(sorted(labels.unique())):
        rows = ranked[labels == label]
        hover = ["<br>".join([f"<b>{html.escape(str(r.trial_id))}</b> ({label})",
                              *(f"{html.escape(p)} = {html.escape(_fmt(r[p]))}" for p in params),
                              f"rank {_fmt(r['rank'])}"]) for _, r in rows.iterrows()]
        fig.add_trace(go.Scatter(x=rows[x], y=rows[y], mode="markers", name=label, hovertext=hover,
                                 hoverinfo="text", marker={"size": 12, "color": _color(label, i),
                                                           "line": {"width": 1, "color": "white"}}))
    front = ranked[ranked["pareto"].astype(bool)].sort_values(x)
    # Both objectives are maximised: from one front point to the next (more accurate, less mixed)
    # the attained region's edge drops first, then runs right ("vh").
    fig.add_trace(go.Scatter(x=front[x], y=front[y], mode="lines", name="Pareto front",
                             line={"shape": "vh", "dash": "dash", "color": "black"}, hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title=f"{x} (held-out validation experiments)",
                      yaxis_title=f"{y} (mean batch-mixing score)", legend_title="method")
    return fig


def parallel_figure(sweep: Sweep, table: pd.DataFrame, log: set[str] = frozenset()) -> go.Figure:
    title = "Searched hyperparameters -> heldout_val_acc"
    target = "heldout_val_acc"
    trials = table[~table["status"].isin(REFERENCE_STATUSES)] if len(table) else table  # searched values only
    rows = trials[pd.to_numeric(trials[target], errors="coerce").notna()] if len(trials) else trials
    if rows.empty:
        return _empty(title, f"no trial has reported {target} yet")
    dims = [_dimension(p, rows[p], p in log) for p in sweep.params if p in rows.columns]
    acc = rows[target].astype(float)
    dims.append({"label": target, "values": acc.tolist()})
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": acc.tolist(), "colorscale": "Viridis",
                                                         "showscale": True, "colorbar": {"title": target}}))
    fig.update_layout(title=title, margin={"l": 70, "r": 40})
    return fig


def _dimension(name: str, column: pd.Series, log: bool) -> dict:
    """A parcoords axis: categories as integer ticks, log-scale values as log10, and values a trial
    did not draw (conditional parameters, e.g. λ of an ERM trial) on their own tick below the range."""
    numeric = pd.to_numeric(column, errors="coerce")
    is_category = column.map(lambda v: isinstance(v, (str, bool, np.bool_))).any()
    if is_category:
        categories = sorted({str(v) for v in column if v is not None and v == v})
        codes = [categories.index(str(v)) if v is not None and v == v else -1 for v in column]
        ticks = list(range(len(categories))) + ([-1] if -1 in codes else [])
        text = categories + (["not drawn"] if -1 in codes else [])
        return {"label": name, "values": codes, "tickvals": ticks, "ticktext": text,
                "range": [min(ticks) - 0.2, max(ticks) + 0.2]}
    values = np.log10(numeric.where(numeric > 0)) if log else numeric
    label = f"log10 {name}" if log else name
    present = values.dropna()
    if present.empty:
        return {"label": label, "values": [0.0] * len(values), "tickvals": [0.0], "ticktext": ["not drawn"]}
    low, high = float(present.min()), float(present.max())
    span = high - low or max(abs(high), 1.0) * 0.1
    ticks = list(np.linspace(low, high, 4)) if high > low else [low]
    text = [_fmt(10 ** t if log else t) for t in ticks]
    missing = low - 0.25 * span
    if values.isna().any():
        ticks, text = [missing, *ticks], ["not drawn", *text]
    return {"label": label, "values": values.fillna(missing).tolist(), "tickvals": ticks, "ticktext": text,
            "range": [min(ticks) - 0.05 * span, high + 0.05 * span]}


def curves_figure(sweep: Sweep) -> go.Figure:
    panels = ("heldout_val_acc", "train_loss")
    title = "Learning curves (dashed: stopped early or failed)"
    trials = [t for t in sweep.trials if t.history]
    if not trials:
        return _empty(title, "no trial has finished an epoch yet")
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{p} by epoch" for p in panels])
    palette = qualitative.Plotly + qualitative.Dark24
    for i, trial in enumerate(trials):
        name = f"{trial.trial_id} ({method_label(trial.method, trial.config.get('domain_label'))})"
        style = {"color": palette[i % len(palette)], "dash": "solid" if trial.status == "completed" else "dash"}
        epochs = [row.get("epoch") for row in trial.history]
        for col, key in enumerate(panels, start=1):
            ys = [row.get(key) for row in trial.history]
            fig.add_trace(go.Scatter(x=epochs, y=[math.nan if v is None else v for v in ys], mode="lines+markers",
                                     name=html.escape(name), legendgroup=trial.trial_id, showlegend=col == 1,
                                     line=style, hovertemplate=f"{html.escape(name)}<br>epoch %{{x}}<br>{key} "
                                     "%{y:.4f}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="epoch", dtick=1)
    fig.update_yaxes(title_text="held-out validation accuracy", row=1, col=1)
    fig.update_yaxes(title_text="training loss", row=1, col=2)
    fig.update_layout(title=title, legend_title="trial (method)")
    return fig


def param_importances(study, n_objectives: int) -> list[dict[str, float]]:
    """Optuna's importances (default evaluator) for each objective of `study`.

    PED-ANOVA, Optuna's default, ranks parameters by how they lead to *low* target values, so
    maximised objectives are negated; variance-based evaluators (fANOVA) are sign-blind."""
    import optuna

    out = []
    for i, direction in enumerate(study.directions[:n_objectives] if n_objectives else study.directions):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "may be inaccurate" on small regimes: the figure says so
            out.append(optuna.importance.get_param_importances(
                study, target=lambda t, i=i, sign=sign: sign * t.values[i]))
    return out


def importance_figure(study, objectives: list[str], reason: str | None = None) -> go.Figure:
    """Bars of param_importances, one panel an objective; an explanatory empty figure when the
    study is missing, too small, or Optuna raises (a report must not fail on a young sweep)."""
    title = "Hyperparameter importance (Optuna, default evaluator)"
    if study is None:
        return _empty(title, f"no importances: {reason or 'no Optuna study'}")
    import optuna

    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
    if done < MIN_IMPORTANCE_TRIALS:
        return _empty(title, f"needs at least {MIN_IMPORTANCE_TRIALS} completed trials "
                             f"(the study has {done}): with fewer, importances are noise")
    names = list(objectives) or [f"objective {i}" for i in range(len(study.directions))]
    try:
        importances = param_importances(study, len(names))
    except Exception as exc:  # noqa: BLE001 - Optuna's own errors (e.g. no parameter varied)
        return _empty(title, f"Optuna could not compute importances: {exc}")
    fig = make_subplots(rows=1, cols=len(importances), subplot_titles=names[:len(importances)],
                        shared_yaxes=True)
    for col, values in enumerate(importances, start=1):
        params = sorted(values, key=values.get)
        fig.add_trace(go.Bar(x=[values[p] for p in params], y=params, orientation="h", showlegend=False,
                             hovertemplate="%{y}: %{x:.3f}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(title_text="importance (sums to 1)", range=[0, 1])
    fig.update_layout(title=f"{title}, {done} completed trials", height=360)
    return fig


def best_trials(sweep: Sweep, table: pd.DataFrame) -> dict[str, tuple]:
    """{method: (trial, row)} for TRIAL_METHODS: the first trial of each method in the table's
    order (lowest rank, then highest heldout_val_acc) whose embeddings exist."""
    by_id = {t.trial_id: t for t in sweep.trials}
    best: dict[str, tuple] = {}
    for _, row in table.iterrows():
        trial = by_id.get(row["trial_id"])
        if trial is not None and trial.embeddings is not None and trial.method not in best:
            best[trial.method] = (trial, row)
    return {m: best[m] for m in TRIAL_METHODS if m in best}


def tsne_2d(vectors: np.ndarray) -> np.ndarray:
    """PCA to min(50, dims) components, then 2-D t-SNE (seeded; perplexity below n/3)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 5:  # t-SNE needs a few neighbours; show the first two principal axes instead
        out = np.zeros((n, 2))
        if n > 1:
            k = min(2, n, vectors.shape[1])
            out[:, :k] = PCA(n_components=k, random_state=SEED).fit_transform(vectors)
        return out
    reduced = PCA(n_components=min(50, vectors.shape[1], n), random_state=SEED).fit_transform(vectors)
    perplexity = min(30.0, (n - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", learning_rate="auto",
                random_state=SEED).fit_transform(reduced)


def embeddings_figure(sweep: Sweep, table: pd.DataFrame, split: str = "heldout_val") -> go.Figure:
    title = f"t-SNE of the {split} embeddings: well mixed = colours by experiment interleave"
    best = best_trials(sweep, table)
    if not best:
        return _empty(title, "no trial has finished training: no embeddings to show")
    panels = []
    for method, (trial, row) in best.items():
        frame = read_embeddings(trial.embeddings)
        frame = frame[frame["split"] == split].reset_index(drop=True)
        total = len(frame)
        if total > MAX_EMBEDDING_POINTS:
            keep = np.sort(np.random.default_rng(SEED).choice(total, MAX_EMBEDDING_POINTS, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        coords = tsne_2d(stack(frame["embedding"])) if len(frame) else np.zeros((0, 2))
        sample = f", {len(frame)} of {total} sites" if len(frame) < total else f", {total} sites"
        head = (f"{trial.trial_id} {method_label(trial.method, trial.config.get('domain_label'))}, "
                f"mixing {_fmt(row.get('mixing'))}{sample}")
        panels.append((head, frame, coords))
    titles = [html.escape(f"{head}: by {by}") for head, _, _ in panels for by in ("experiment", "cell type")]
    fig = make_subplots(rows=len(panels), cols=2, subplot_titles=titles, horizontal_spacing=0.06,
                        vertical_spacing=0.12 if len(panels) > 1 else 0.1)
    experiments = sorted({e for _, f, _ in panels for e in f["experiment"]})
    cell_types = sorted({c for _, f, _ in panels for c in f["cell_type"]})
    exp_colors = qualitative.Dark24 + qualitative.Light24
    type_colors = qualitative.Set1
    shown: set[tuple[str, str]] = set()
    for r, (_, frame, coords) in enumerate(panels, start=1):
        for col, (key, groups, colors, legend) in enumerate(
                [("experiment", experiments, exp_colors, "legend"),
                 ("cell_type", cell_types, type_colors, "legend2")], start=1):
            for i, group in enumerate(groups):
                mask = (frame[key] == group).to_numpy()
                if not mask.any():
                    continue
                sites = frame.loc[mask, ["site_id", "experiment", "cell_type", "well", "label"]]
                hover = [f"{html.escape(str(s))}<br>{html.escape(str(e))} ({html.escape(str(c))})<br>"
                         f"well {html.escape(str(w))}, siRNA {html.escape(str(lab))}"
                         for s, e, c, w, lab in sites.itertuples(index=False)]
                fig.add_trace(go.Scatter(
                    x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=html.escape(str(group)),
                    legend=legend, legendgroup=f"{key}:{group}", showlegend=(key, group) not in shown,
                    marker={"size": 4, "color": colors[i % len(colors)], "opacity": 0.75},
                    hovertext=hover, hoverinfo="text"), row=r, col=col)
                shown.add((key, group))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    missing = [m.upper() for m in ("dann", "erm") if m not in best and not (m == "dann" and "cdann" in best)]
    if missing:
        title += f" (no finished {missing[0]} trial to compare)"
    fig.update_layout(title=title, height=430 * len(panels) + 80,
                      legend={"title": {"text": "experiment"}, "y": 1.0, "yanchor": "top"},
                      legend2={"title": {"text": "cell type"}, "y": 0.0, "yanchor": "bottom"})
    return fig
