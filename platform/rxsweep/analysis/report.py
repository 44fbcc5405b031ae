"""A sweep's report: ONE self-contained HTML file (`rxsweep report`, and the end of `jobs/sweep.py`).

    title            the sweep's name
    headline         did the model stop seeing the batch? the verdict (verdict.py): each method's
                     confirmation runs against ERM on held-out test experiments, with intervals
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

from rxsweep.analysis.figures import build_figures
from rxsweep.analysis.ranking import format_cell, rank_sweep
from rxsweep.analysis.reference_rows import EMBEDDINGS_HARMONY_METHOD, EMBEDDINGS_METHOD
from rxsweep.analysis.sweep_folder import Sweep, load_sweep
from rxsweep.analysis.verdict import headline_text, read_verdict, write_verdict
from rxsweep.tuning.sweep_files import STATUSES, VERDICT_FILE
from rxsweep import fileio

__all__ = ["build_figures", "write_report", "headline", "REPORT_FILE"]

REPORT_FILE = "report.html"
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
    "resampling": ("Adaptive resampling by cell type", "Does drawing rare embeddings more often help the "
                   "cell types training saw little of? (the verdict's confirmation runs, seeds averaged, when the "
                   "sweep has them; the verdict's + AR arm gives the intervals)"),
}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1300px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.headline { background: #f4f7fb; border-left: 4px solid #3465a4; padding: 0.8em 1.2em; font-size: 1.1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; } tr.pareto td { background: #eef8ee; font-weight: 600; }
td.better { background: #e6f4e6; } td.worse { background: #fbe9e7; }
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
    page = render(sweep, table, figures, verdict_of(sweep))
    with fileio.atomic_path(out) as tmp:  # a reader never sees half a report
        tmp.write_text(page, encoding="utf-8")
    return out


def verdict_of(sweep: Sweep) -> dict | None:
    """verdict.json, computed and written first when the confirmation runs ended after it (or it is
    missing); None when the sweep has no confirmation runs."""
    if not sweep.confirm_record:
        return None
    written = sweep.path / VERDICT_FILE
    newest = max((t.path.stat().st_mtime for t in sweep.confirm), default=0.0)
    if written.exists() and written.stat().st_mtime >= newest:
        return read_verdict(sweep.path)
    return write_verdict(sweep.path)


def render(sweep: Sweep, table: pd.DataFrame, figures: dict, verdict: dict | None = None) -> str:
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
        f'<div class="headline" id="headline">{headline(table, verdict)}</div>',
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
    """The table's first (best) trial row of a method with a held-out accuracy, or None."""
    acc = pd.to_numeric(table["heldout_val_acc"], errors="coerce") if len(table) else pd.Series([], dtype=float)
    rows = table[(table["method"] == method) & acc.notna()] if len(table) else table
    return None if rows.empty else rows.iloc[0]


def headline(table: pd.DataFrame, verdict: dict | None = None) -> str:
    """HTML: 'did the model stop seeing the batch?' answered by the verdict (rxsweep.analysis.verdict:
    each method's confirmation runs on held-out test experiments, with intervals), or, before
    there is one, the search's best trials of each method with no judgement."""
    question = "<b>Did the model stop seeing the batch?</b>"
    if verdict and verdict.get("arms"):
        return f"<p>{question}</p>{verdict_html(verdict)}"
    best = [(m, _best(table, m)) for m in ("erm", "dann", "cdann")]
    have = "; ".join(f"best {m.upper()} trial {html.escape(str(r['trial_id']))}: heldout_val_acc "
                     f"{_f(r['heldout_val_acc'])}, mixing {_f(r['mixing'])}" for m, r in best if r is not None)
    why = html.escape((verdict or {}).get("note", "the confirmation runs have not finished (or confirm.seeds is 0)"))
    return (f"<p>{question} No verdict yet: {why}. A search selects, it does not judge; the verdict compares "
            f"each method's confirmation runs on held-out test experiments.</p><p class='note'>{have}</p>")


def verdict_html(verdict: dict) -> str:
    """The verdict's one-sentence summary first, then the verdict as a table (one row an arm: mean
    [interval] of each metric, the word against ERM) under its one-paragraph answer."""
    summary, *lines = [html.escape(line) for line in headline_text(verdict).splitlines()]
    metrics = [*verdict["metrics"], *verdict.get("reported", [])]  # reported: shown, not judged
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = []
    for arm in verdict["arms"]:
        cells = []
        for m in metrics:
            value = arm["metrics"][m]
            word = value.get("vs_erm")
            css = {"better": "better", "worse": "worse"}.get(word, "")
            cells.append(f"<td class='{css}'>{html.escape(_interval(value))}"
                         f"{'<br><small>' + html.escape(word) + '</small>' if word else ''}</td>")
        seeds = (f"{len(arm['seeds'])} seed(s): {', '.join(map(str, arm['trial_ids']))}"
                 if arm["method"] != "features" and not arm["method"].startswith((EMBEDDINGS_METHOD,
                                                                                   EMBEDDINGS_HARMONY_METHOD))
                 else "deterministic")
        body.append(f"<tr data-arm='{html.escape(arm['method'])}'><td style='text-align:left'>"
                    f"{html.escape(arm['name'])}</td><td>{seeds}</td>{''.join(cells)}</tr>")
    return (f"<p id='verdict-summary'><b>{summary}</b></p>"
            f"<p>{lines[0]}</p><ul>{''.join(f'<li>{line}</li>' for line in lines[1:])}</ul>"
            f"<table id='verdict'><tr><th>method</th><th>runs</th>{head}</tr>{''.join(body)}</table>"
            "<p class='note'>Mean over seeds on the held-out test experiments [95% bootstrap interval over "
            "seeds and siRNAs, and experiments where a cell type has 3 or more], sd: the seeds' standard "
            "deviation; the word compares with ERM on the same resamples, Holm-corrected over every word of "
            "the verdict (rxsweep.metrics.intervals).</p>")


def _interval(value: dict) -> str:
    mean, lo, hi, sd = (_num(value.get(k)) for k in ("mean", "lo", "hi", "seed_sd"))
    if math.isnan(mean):
        return "n/a"
    text = f"{mean:.3f}" if math.isnan(lo) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"
    return text if math.isnan(sd) else f"{text} sd {sd:.3f}"


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _f(value) -> str:
    value = _num(value)
    return "n/a" if math.isnan(value) else f"{value:.3f}"


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
    note = ("<p class='note'>Ranked on heldout_val_acc (treatment wells) and mixing (rank = mean of "
            "the two ranks; <b>*</b> = on the Pareto front, highlighted). heldout_test_acc is shown, never "
            "used to rank. heldout_val_plate_acc is plate-constrained accuracy: it uses the plate design "
            "(each plate holds one known group of siRNAs). Trials stopped early are ranked on their last "
            "epoch; failed trials and trials without both scores are listed below the ranked ones; the "
            "post-hoc and features rows come last, shown for reference, never ranked.</p>")
    return (f'<div class="ranking"><table id="ranking"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>{note}")

