"""The end of `rxsweep sweep` and the default of `rxsweep rank`, in at most 120 columns
(rxsweep.console.WIDTH): the verdict's sentence, the verdict table (each arm x each judged
metric: mean [interval] and its word against ERM), the ranked trials with the columns a reader
needs first, then the paths. `rxsweep rank --wide` (rxsweep.analysis.ranking.format_table) keeps
every column.

    sentence        verdict["summary"] (rxsweep.analysis.verdict_summary), or why there is none
    verdict table   arm | accuracy | mixing | replicate mAP: "0.412 [0.381, 0.443]" over the word
    trials          rank (* on the Pareto front) | trial | method | parameters | val acc | mixing |
                    status ("stopped at EPOCH"); the parameters the method column does not tell,
                    wrapped within their column
    paths           "report: PATH", then the sweep folder, the last line (scripts read it)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TextIO

import pandas as pd
from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from rxsweep.analysis.ranking import format_cell
from rxsweep.analysis.reference_rows import REFERENCE_STATUSES, reference_label
from rxsweep.analysis.verdict_summary import LABELS as METRIC_LABELS
from rxsweep.analysis.verdict_summary import summary_sentence
from rxsweep.console import make_console

#: Trials shown at the end of a sweep (`rxsweep rank` shows them all).
TOP = 5
#: Parameters the method column tells already.
IN_METHOD = ("domain_label", "adversary", "resampling")
#: Characters of a trial's parameters beyond which their cell may take several lines.
WRAPS_AT = 50
WORD_STYLES = {"better": "bold green", "worse": "bold red"}


def no_verdict_sentence() -> str:
    return ("No verdict: this sweep ran no confirmation runs (confirm.seeds: 0), so nothing was judged on the "
            "held-out test experiments; its trials are ranked on the validation experiments below.")


def verdict_table(verdict: dict):
    """Each arm (rows, ERM first) x each judged metric: mean [lo, hi] over its word against ERM;
    None when the verdict has no arms."""
    arms = verdict.get("arms") or []
    if not arms:
        return None
    metrics = list(verdict.get("metrics") or METRIC_LABELS)
    levels = "seeds and siRNAs" + (", experiments" if (verdict.get("resampled") or {}).get("experiments_of") else "")
    table = Table(title=f"Verdict on {len(verdict.get('experiments') or [])} held-out test experiments: each arm "
                        "against ERM", title_justify="left",
                  caption=f"mean over seeds [{int(round(verdict.get('level', 0.95) * 100))}% bootstrap interval over "
                          f"{levels}]; words Holm-corrected over {verdict.get('n_words', 0)} comparisons",
                  caption_justify="left")
    table.add_column("arm", no_wrap=True)
    for metric in metrics:
        table.add_column(METRIC_LABELS.get(metric, metric))
    for k, arm in enumerate(arms):
        cells = []
        for metric in metrics:
            m = (arm.get("metrics") or {}).get(metric) or {}
            word = "reference" if k == 0 else (m.get("vs_erm") or "not scored")
            cell = Text(_interval(m) + "\n")
            cell.append(word, style=WORD_STYLES.get(word, "dim"))
            cells.append(cell)
        table.add_row(arm["name"], *cells)
    return table


def _interval(m: dict) -> str:
    mean = _number(m.get("mean"))
    if mean is None:
        return "n/a"
    lo, hi = _number(m.get("lo")), _number(m.get("hi"))
    return f"{mean:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else "")


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def ranking_table(table: pd.DataFrame, limit: int | None = None) -> Group:
    """The ranked trials (rank_sweep's table) in a few columns, and a line on how they are ranked:
    the first ``limit`` trials, or every row (trials, then the reference rows) when None."""
    reference = table["status"].isin(REFERENCE_STATUSES)
    trials = int((~reference).sum())
    rows = table[~reference].head(limit) if limit is not None else table
    params = _param_columns(table)
    if limit is not None and trials > len(rows):
        title = f"Top {len(rows)} of {trials} trials"
    else:
        title = f"{trials} trial{'s' if trials != 1 else ''}"
    shown = Table(title=title + ", ranked on held-out validation accuracy and mixing", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    shown.add_column("rank", justify="right", no_wrap=True)
    shown.add_column("trial", no_wrap=True)
    shown.add_column("method", no_wrap=True)
    shown.add_column("parameters", overflow="fold")
    shown.add_column("val acc", justify="right", no_wrap=True)
    shown.add_column("mixing", justify="right", no_wrap=True)
    shown.add_column("status", no_wrap=True)
    for row in rows.to_dict(orient="records"):
        rank = _number(row.get("rank"))
        told_rank = "-" if rank is None else (f"{rank:g}" + (" *" if row.get("pareto") else ""))
        told_params = ", ".join(f"{p} {_short(row[p])}" for p in params if p not in IN_METHOD and _present(row.get(p)))
        shown.show_lines |= len(told_params) > WRAPS_AT  # a blank line between rows whose cells take several
        shown.add_row(told_rank, str(row.get("trial_id")), _method(row), told_params or "-",
                      format_cell(row.get("heldout_val_acc")), format_cell(row.get("mixing")), _status(row))
    return Group(shown, Text("rank: the mean of the two ranks, 1 best; * on their Pareto front. Every column: "
                             "rxsweep rank SWEEP_FOLDER --wide", style="dim"))


def _short(value) -> str:
    """A parameter's value in few characters: 0.3, 3.5e-3, 50, plate."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e6:
        return str(int(value))
    if 1e-2 <= abs(value) < 1e4:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _status(row: dict) -> str:
    status = str(row.get("status"))
    epochs = _number(row.get("epochs"))
    return f"{status} at {epochs:g}" if status == "stopped" and epochs is not None else status


def _param_columns(table: pd.DataFrame) -> list[str]:
    """The searched parameters: rank_sweep puts them between domain_label and epochs."""
    columns = list(table.columns)
    if "domain_label" not in columns or "epochs" not in columns:
        return []
    return columns[columns.index("domain_label") + 1:columns.index("epochs")]


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _method(row: dict) -> str:
    method = row.get("method")
    if reference_label(method) is not None:  # a post-hoc, features or --embeddings row
        return reference_label(method)
    domain = row.get("domain_label")
    label = "ERM" if method in (None, "erm") or not _present(domain) or domain == "none" \
        else f"{str(method).upper()}-{domain}"
    return label + (" + AR" if row.get("resampling") == "adaptive" else "")


def print_sweep_end(verdict: dict | None, table: pd.DataFrame, report: str | Path, sweep_dir: str | Path,
                    file: TextIO | None = None) -> None:
    """The end of `rxsweep sweep`: the sentence, the verdict table, the top TOP trials, the report's
    path and the sweep folder (the last line)."""
    console = make_console(file)
    console.print()
    sentence = (verdict.get("summary") or summary_sentence(verdict)) if verdict else no_verdict_sentence()
    console.print(Text(sentence, style="bold"))
    verdicts = verdict_table(verdict) if verdict else None
    if verdicts is not None:
        console.print()
        console.print(verdicts)
    console.print()
    console.print(ranking_table(table, TOP))
    console.file.flush()
    print(f"report: {report}", file=file, flush=True)  # plain prints: a path is never wrapped
    print(sweep_dir, file=file, flush=True)
