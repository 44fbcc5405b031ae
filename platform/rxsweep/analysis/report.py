"""A sweep's report: ONE self-contained HTML file (`rxsweep report`, and the end of `jobs/sweep.py`).

    title            the sweep's name
    headline         did the model stop seeing the batch? best DANN vs best ERM trial: held-out
                     validation accuracy and batch mixing, and their differences
    status           trials completed / stopped / error / running (and lost ones, never ranked)
    ranking          rank_sweep's table (Pareto rows marked)
    figures          figures.build_figures, each under a heading, in a div `fig-<name>`

plotly.js is inlined once, so the file opens offline (a cluster's results folder copied to a
laptop, an air-gapped node). Every text that comes from the sweep folder is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from rxsweep.analysis.figures import build_figures, method_label
from rxsweep.analysis.ranking import RANK_ON, format_cell, rank_sweep
from rxsweep.analysis.sweep_folder import Sweep, load_sweep
from rxsweep.tuning.sweep_files import STATUSES
from rxsweep import fileio

__all__ = ["build_figures", "write_report", "headline", "REPORT_FILE"]

REPORT_FILE = "report.html"
#: Differences below this are not called a difference in the headline: on held-out sets of a few
#: hundred sites, one site more or less moves accuracy by about 0.003.
TIE = 0.01
#: What each figure answers, shown under its heading.
CAPTIONS = {
    "pareto": ("Accuracy on held-out experiments against their batch mixing", "Which trials trade "
               "accuracy for mixing, and which are not beaten on both (the Pareto front)?"),
    "parallel": ("Hyperparameters", "Which searched values lead to high held-out accuracy? "
                 "(drag along an axis to filter)"),
    "curves": ("Learning curves", "Did the trials converge, and which ones did the scheduler stop?"),
    "importance": ("Hyperparameter importance", "Which hyperparameters matter most for each objective?"),
    "embeddings": ("Held-out embeddings", "Does the model still see the batch? Colours by experiment "
                   "should interleave within a cell type, and cell types may stay apart."),
}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.headline { background: #f4f7fb; border-left: 4px solid #3465a4; padding: 0.8em 1.2em; font-size: 1.1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } tr.pareto td { background: #eef8ee; font-weight: 600; }
.ranking { overflow-x: auto; } .note, .caption { color: #555; font-size: 0.9em; }
"""


def write_report(sweep_dir, out=None) -> Path:
    """Write SWEEP_DIR's HTML report to `out` (default SWEEP_DIR/report.html); return its path."""
    sweep = load_sweep(sweep_dir)
    table = rank_sweep(sweep)
    figures = build_figures(sweep, table)
    out = Path(out) if out is not None else sweep.path / REPORT_FILE
    out = out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    page = render(sweep, table, figures)
    with fileio.atomic_path(out) as tmp:  # a reader never sees half a report
        tmp.write_text(page, encoding="utf-8")
    return out


def render(sweep: Sweep, table: pd.DataFrame, figures: dict) -> str:
    """The whole page as a string (plotly.js inlined once)."""
    from plotly.offline import get_plotlyjs

    name = html.escape(sweep.name)
    state = "finished" if sweep.finished else "still running or interrupted"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>rxsweep report: {name}</title><style>{_CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>',
        f"<h1>Sweep <code>{name}</code></h1>",
        f'<p class="note">{html.escape(str(sweep.path))} &middot; {len(sweep.trials)} trials &middot; '
        f"sweep {state}</p>",
        f'<div class="headline" id="headline">{headline(table)}</div>',
        "<h2>Trials</h2>", status_html(sweep),
        "<h2>Ranking</h2>", table_html(table),
    ]
    for key, fig in figures.items():
        heading, question = CAPTIONS.get(key, (key, ""))
        parts += [f'<h2 id="section-{key}">{html.escape(heading)}</h2>', f'<p class="caption">{question}</p>',
                  fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"fig-{key}",
                              config={"displaylogo": False, "responsive": True})]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _best(table: pd.DataFrame, method: str):
    """The table's first (best) row of a method with a held-out accuracy, or None."""
    acc = pd.to_numeric(table["heldout_val_acc"], errors="coerce") if len(table) else pd.Series([], dtype=float)
    rows = table[(table["method"] == method) & acc.notna()] if len(table) else table
    return None if rows.empty else rows.iloc[0]


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _f(value, signed: bool = False) -> str:
    value = _num(value)
    return "n/a" if math.isnan(value) else (f"{value:+.3f}" if signed else f"{value:.3f}")


def headline(table: pd.DataFrame) -> str:
    """HTML: 'did the model stop seeing the batch?' answered from the best DANN and ERM trials."""
    dann, erm = _best(table, "dann"), _best(table, "erm")
    acc, mix = RANK_ON
    if dann is None or erm is None:
        have = "; ".join(f"best {m.upper()} {html.escape(str(r['trial_id']))}: {acc} {_f(r[acc])}, {mix} "
                         f"{_f(r[mix])}" for m, r in (("dann", dann), ("erm", erm)) if r is not None)
        missing = " and ".join(m for m, r in (("DANN", dann), ("ERM", erm)) if r is None)
        return (f"<b>Did the model stop seeing the batch? Not answerable yet:</b> no {missing} trial has "
                f"a held-out accuracy to compare. {have}")
    d_acc, d_mix = _num(dann[acc]) - _num(erm[acc]), _num(dann[mix]) - _num(erm[mix])
    if math.isnan(d_mix):
        verdict = "Not answerable yet: the best trials are not both scored on mixing (stopped early?)."
    elif d_mix > TIE and d_acc >= -TIE:
        verdict = "Yes, more than ERM: DANN mixes the held-out experiments better, at no cost in accuracy."
    elif d_mix > TIE:
        verdict = (f"Partly: DANN mixes the held-out experiments better, at a cost of {abs(d_acc):.3f} "
                   "held-out accuracy.")
    elif d_mix >= -TIE:
        verdict = f"Not measurably: DANN's held-out experiments mix about as well as ERM's (within {TIE})."
    else:
        verdict = "No: DANN's held-out experiments are less mixed than ERM's."
    rows = [(f"best DANN ({html.escape(method_label(dann['domain_label']))})", dann),
            ("best ERM", erm)]
    cells = "".join(f"<tr><td style='text-align:left'>{label}</td><td>{html.escape(str(r['trial_id']))}</td>"
                    f"<td>{_f(r[acc])}</td><td>{_f(r[mix])}</td></tr>" for label, r in rows)
    cells += (f"<tr><td style='text-align:left'>DANN &minus; ERM</td><td></td><td>{_f(d_acc, True)}</td>"
              f"<td>{_f(d_mix, True)}</td></tr>")
    return (f"<p><b>Did the model stop seeing the batch?</b> {verdict}</p>"
            f"<table><tr><th></th><th>trial</th><th>{acc}</th><th>{mix} (1 = well mixed)</th></tr>{cells}"
            "</table>")


def status_html(sweep: Sweep) -> str:
    counts = {s: 0 for s in STATUSES if s != "lost"}
    for trial in sweep.trials:
        counts[trial.status] = counts.get(trial.status, 0) + 1
    items = [f"{html.escape(s)}: <b>{n}</b>" for s, n in counts.items()]
    if sweep.lost:
        items.append(f"lost (started, then forgotten by a killed sweep driver; not ranked): "
                     f"<b>{len(sweep.lost)}</b>")
    out = f'<p id="status">{" &middot; ".join(items)}</p>'
    errors = [t for t in sweep.trials if t.status == "error"]
    if errors:
        out += "<ul>" + "".join(f"<li><code>{html.escape(t.trial_id)}</code>: "
                                f"{html.escape((t.error or 'no message')[:400])}</li>" for t in errors) + "</ul>"
    return out


def table_html(table: pd.DataFrame) -> str:
    """The ranking as an HTML table, Pareto rows marked (class `pareto`, column `front`)."""
    shown = table.rename(columns={"pareto": "front"})
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):
        record = dict(zip(shown.columns, row))
        css = ' class="pareto"' if bool(record.get("front")) else ""
        cells = "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row)
        body.append(f'<tr{css} data-trial="{html.escape(str(record.get("trial_id")))}">{cells}</tr>')
    note = ("<p class='note'>Ranked on heldout_val_acc and mixing (rank = mean of the two ranks; "
            "<b>*</b> = on the Pareto front, highlighted). heldout_test_acc is shown, never used to rank. "
            "heldout_val_plate_acc is plate-constrained accuracy: it uses the plate design (each plate "
            "holds one known group of siRNAs). Trials stopped early or failed have no mixing score and "
            "are listed below the ranked ones.</p>")
    return (f'<div class="ranking"><table id="ranking"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{note}")

