"""The HTML report, its figures and the overview notebook, on the session's real tiny sweep.

The report is opened in headless Chromium to check that every figure is drawn offline; the
notebook is executed end to end with nbclient in a kernel running this interpreter.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from rxsweep.analysis.figures import FIGURES, MAX_EMBEDDING_POINTS, MIN_IMPORTANCE_TRIALS, build_figures, \
    importance_figure, param_importances
from rxsweep.analysis.ranking import rank_sweep
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.analysis.report import write_report
from rxsweep.analysis.verdict import read_verdict
from rxsweep.metrics.embedding_scores import read_embeddings

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "analysis" / "sweep_overview.ipynb"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def ranked(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    return sweep, rank_sweep(sweep)


@pytest.fixture(scope="module")
def figures(ranked):
    return build_figures(*ranked)


@pytest.fixture(scope="module")
def report(tiny_sweep, tmp_path_factory) -> Path:
    return write_report(tiny_sweep, tmp_path_factory.mktemp("report") / "report.html")


class _Figures(HTMLParser):
    """Per `fig-<name>` div: the classes of the elements inside it (how often each occurs)."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.classes: dict[str, dict[str, int]] = {}
        self._current, self._depth = None, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self._current is None and (attrs.get("id") or "").startswith("fig-"):
            self._current, self._depth = attrs["id"][4:], 0
            self.classes[self._current] = {}
        if self._current is None:
            return
        for name in (attrs.get("class") or "").split():
            self.classes[self._current][name] = self.classes[self._current].get(name, 0) + 1
        if tag not in self.VOID:
            self._depth += 1

    def handle_startendtag(self, tag, attrs):  # <path/> etc. in the SVG: no depth change
        depth = self._depth
        self.handle_starttag(tag, attrs)
        self._depth = depth

    def handle_endtag(self, tag):
        if self._current is not None and tag not in self.VOID:
            self._depth -= 1
            if self._depth == 0:
                self._current = None


class _Section(HTMLParser):
    """The text of the element with a given id, and the data-trial rows of the ranking table."""

    def __init__(self, element_id: str):
        super().__init__()
        self.element_id, self.text, self.trials = element_id, [], []
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-trial" in attrs:
            self.trials.append(attrs["data-trial"])
        if self._depth or attrs.get("id") == self.element_id:
            self._depth += 1

    def handle_endtag(self, tag):
        if self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.text.append(data)


def test_report_is_one_self_contained_file(report):
    from plotly.offline import get_plotlyjs

    text = report.read_text(encoding="utf-8")
    assert report.name == "report.html" and report.is_absolute()
    plotlyjs = get_plotlyjs()
    assert text.count(plotlyjs) == 1, "plotly.js must be inlined exactly once"
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.IGNORECASE), "no script may load from elsewhere"
    rest = text.replace(plotlyjs, "")  # plotly.js itself names its CDN (map topologies, unused here)
    assert "cdn.plot.ly" not in rest and "require.js" not in rest
    for name in FIGURES:
        assert text.count(f'id="fig-{name}"') == 1, name


def test_report_renders_every_figure_in_chromium(report, figures, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (CI installs it)")
    # --enable-unsafe-swiftshader: the parallel-coordinates trace draws with WebGL, which headless
    # Chromium without a GPU only gets from SwiftShader, and the silent fallback is deprecated.
    done = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--enable-unsafe-swiftshader", "--enable-logging=stderr",
         f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=20000", "--dump-dom",
         report.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    parser = _Figures()
    parser.feed(done.stdout)
    rendered = {name for name, classes in parser.classes.items()
                if classes.get("main-svg") and classes.get("js-plotly-plot")}
    assert rendered == set(figures), {name: sorted(c)[:20] for name, c in parser.classes.items()}
    assert len(rendered) == len(figures) == len(FIGURES)
    assert parser.classes["parallel"].get("parcoords"), "the parallel coordinates were not drawn"
    points = parser.classes["embeddings"].get("point", 0)
    assert points == sum(len(trace.x) for trace in figures["embeddings"].data)
    errors = [line for line in done.stderr.splitlines() if "Uncaught" in line]
    assert not errors, errors


def test_report_lists_every_row_and_headlines_the_verdict(report, ranked):
    """The ranking lists every trial and reference row; the headline is the verdict: every arm
    (ERM, DANN, the post-hoc corrections, the features baseline) with its runs' trial ids."""
    sweep, table = ranked
    parser = _Section("headline")
    parser.feed(report.read_text(encoding="utf-8"))
    assert sorted(parser.trials) == sorted(table["trial_id"])
    assert {t.trial_id for t in sweep.trials} <= set(parser.trials)
    assert {"features + LR"} <= set(parser.trials)
    headline = " ".join(parser.text)
    assert "Did the model stop seeing the batch?" in headline and "held-out test experiments" in headline
    verdict = read_verdict(sweep.path)
    names = [arm["name"] for arm in verdict["arms"]]
    assert names[0] == "ERM" and {"ERM + sphering", "ERM + Harmony", "features + LR"} <= set(names)
    for arm in verdict["arms"]:
        assert arm["name"] in headline and all(i in headline for i in arm["trial_ids"]), arm["name"]
    assert sweep.name in report.read_text(encoding="utf-8").split("</h1>")[0]


def test_build_figures(figures, ranked):
    sweep, table = ranked
    assert list(figures) == list(FIGURES)
    assert all(isinstance(fig, go.Figure) for fig in figures.values())

    scored = table[["heldout_val_acc", "mixing"]].notna().all(axis=1)
    markers = [t for t in figures["pareto"].data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == scored.sum()
    # the trials, and the reference rows (post-hoc corrections, features baseline) beside them
    assert {t.name for t in markers} <= {"ERM", "DANN-plate", "DANN-experiment", "ERM + sphering",
                                         "ERM + Harmony", "features + LR"}
    assert "features + LR" in {t.name for t in markers}

    (parcoords,) = figures["parallel"].data
    assert [d.label for d in parcoords.dimensions][-1] == "heldout_val_acc"
    assert len(parcoords.dimensions) == len(sweep.params) + 1
    assert "log10 lr" in [d.label for d in parcoords.dimensions]

    with_history = [t for t in sweep.trials if t.history]
    assert len(figures["curves"].data) == 2 * len(with_history)

    import optuna

    study = optuna.load_study(study_name=sweep.name, storage=sweep.optuna_storage)
    completed = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    notes = " ".join(a.text for a in figures["importance"].layout.annotations)
    # the fixture's 4 trials are too few: the note, not bars (test_importances_from_optuna_per_objective
    # checks the bars on a study large enough)
    assert completed <= len(sweep.trials) == 4 < MIN_IMPORTANCE_TRIALS and not figures["importance"].data
    assert f"needs at least {MIN_IMPORTANCE_TRIALS} completed trials" in notes


def test_embeddings_figure_shows_best_dann_and_erm(figures, ranked):
    """One row per method that has a finished trial (ASHA may have stopped every DANN trial of the
    fixture's sweep early: which ones depends on the order results arrive), two panels a row."""
    sweep, _ = ranked
    fig = figures["embeddings"]
    titles = [a.text for a in fig.layout.annotations if "sites:" in a.text]
    methods = sorted({t.method for t in sweep.trials if t.embeddings is not None})
    assert methods and len(titles) == 2 * len(methods), (titles, methods)
    axes = {trace.xaxis for trace in fig.data}
    assert len(axes) == len(titles), (titles, axes)
    by_id = {t.trial_id: t for t in sweep.trials}
    shown = [by_id[title.split()[0]] for title in titles[::2]]
    assert sorted(t.method for t in shown) == methods
    rows = 0
    for trial in shown:
        frame = read_embeddings(trial.embeddings)
        rows += min(int((frame["split"] == "heldout_val").sum()), MAX_EMBEDDING_POINTS)
    assert rows > 0
    columns = (("x", "x3"), ("x2", "x4")) if len(shown) == 2 else (("x",), ("x2",))
    for column in columns:  # every site once a column
        assert sum(len(t.x) for t in fig.data if t.xaxis in column) == rows
    assert all(np.isfinite(np.asarray(t.x, float)).all() for t in fig.data)


def test_resampling_figure_compares_ar_and_plain_confirmation_runs_per_cell_type(figures, ranked):
    """AR's confirmation runs against those of its method's plain group, cell type by cell type on
    the test experiments: bars equal to the treatment accuracy counted here from their embeddings,
    averaged over seeds; the ranking shows what AR did in each AR trial's last epoch."""
    sweep, table = ranked
    record = sweep.confirm_record
    by_id = {t.trial_id: t for t in [*sweep.trials, *sweep.confirm]}
    groups = {"none": record[record["ar"]["base_method"]], "adaptive": record["ar"]}
    bars = [t for t in figures["resampling"].data if t.type == "bar" and t.xaxis == "x"]
    assert len(bars) == 2 and "confirmation runs, heldout_test" in figures["resampling"].layout.title.text
    for bar, kind in zip(bars, ("none", "adaptive")):
        runs = [by_id[i] for i in groups[kind]["trial_ids"]]
        assert f"{len(runs)} seeds" in bar.name
        per_run = []
        for run in runs:
            frame = read_embeddings(run.embeddings)
            treat = frame[(frame["split"] == "heldout_test") & (frame["well_type"] == "treatment")]
            per_run.append((treat["prediction"] == treat["label"]).groupby(treat["cell_type"]).mean())
        by_hand = pd.concat(per_run, axis=1).mean(axis=1)
        assert [t.split(" (")[0] for t in bar.x] == list(by_hand.index)
        assert np.allclose(np.asarray(bar.y, float), by_hand.to_numpy())
    splits = pd.read_parquet(by_id[groups["none"]["trial_ids"][0]].path / "splits.parquet")
    share = splits.loc[splits["split"] == "train", "cell_type"].value_counts(normalize=True)
    assert all(f"({share[t.split(' (')[0]]:.0%} of training)" in t for t in bars[0].x)
    trials = table[table["trial_id"].isin({t.trial_id for t in sweep.trials})]  # not the reference rows
    ar_rows = trials[trials["resampling"] == "adaptive"]
    assert len(ar_rows) == 1 and (trials["resampling"] == "none").sum() == len(sweep.trials) - 1
    row = ar_rows.iloc[0]
    assert row["ar_ess"] == by_id[row["trial_id"]].last["ar_ess"] and row["ar_max_weight"] >= 1


def test_resampling_figure_without_confirmation_runs_shows_the_ranking_best(tiny_sweep, tmp_path):
    """A sweep without confirmation runs: the ranking's best AR trial against its best plain trial
    of the same method, on the validation experiments."""
    import shutil

    from rxsweep.analysis.resampling_figure import resampling_figure

    copy = tmp_path / "no-confirm"
    shutil.copytree(tiny_sweep, copy, ignore=shutil.ignore_patterns("confirm"))
    sweep = load_sweep(copy)
    table = rank_sweep(sweep, retention=False)
    ranked_trials = [t for i in table["trial_id"] for t in sweep.trials if t.trial_id == i and t.embeddings is not None]
    ar = next(t for t in ranked_trials if t.config["resampling"] == "adaptive")
    plain = next(t for t in ranked_trials if t.config["resampling"] == "none" and t.method == ar.method)
    fig = resampling_figure(sweep, table)
    assert "best trial of the ranking, heldout_val" in fig.layout.title.text
    for bar, trial in zip([t for t in fig.data if t.type == "bar" and t.xaxis == "x"], (plain, ar)):
        assert trial.trial_id in bar.name
        frame = read_embeddings(trial.embeddings)
        treat = frame[(frame["split"] == "heldout_val") & (frame["well_type"] == "treatment")]
        assert np.allclose(np.asarray(bar.y, float),
                           (treat["prediction"] == treat["label"]).groupby(treat["cell_type"]).mean().to_numpy())


def _toy_study(n_trials: int):
    """Two maximised objectives; the first is x where c == 'a' and 0 elsewhere, so reaching its
    *high* values needs both x and c, while its low values (the ties at 0) need only c."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial):
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        c = trial.suggest_categorical("c", ["a", "b"])
        trial.suggest_float("noise", 0.0, 1.0)
        return (x if c == "a" else 0.0), -abs(np.log10(x) + 1.5)

    study.optimize(objective, n_trials=n_trials)
    return study


def test_importances_from_optuna_per_objective():
    study = _toy_study(60)
    first, second = param_importances(study, 2)
    assert set(first) == set(second) == {"x", "c", "noise"}
    # Maximised objectives are negated for PED-ANOVA: un-negated, `c` (the ties at 0) would win.
    assert first["x"] == max(first.values()) and second["x"] == max(second.values())
    fig = importance_figure(study, ["acc", "mix"])
    assert len(fig.data) == 2 and [a.text for a in fig.layout.annotations] == ["acc", "mix"]
    assert all(abs(sum(t.x) - 1.0) < 1e-6 for t in fig.data)

    small = importance_figure(_toy_study(MIN_IMPORTANCE_TRIALS - 1), ["acc", "mix"])
    assert not small.data
    assert f"needs at least {MIN_IMPORTANCE_TRIALS} completed trials" in small.layout.annotations[0].text


def test_notebook_runs_end_to_end(tiny_sweep, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code), \
        "save the notebook without outputs"
    # The kernel must be this interpreter (the project's virtualenv), whatever other `python3`
    # kernelspecs the machine has: JUPYTER_PATH comes first in Jupyter's search path.
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "rxsweep test kernel", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("RXSWEEP_SWEEP", str(tiny_sweep))
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()
    errors = [out for cell in code for out in cell.outputs if out.output_type == "error"]
    assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
    shown = [cell for cell in code if ".show()" in cell.source]
    assert len(shown) == len(FIGURES)
    assert all(any(out.output_type == "display_data" for out in cell.outputs) for cell in shown)


def test_cli_report(tiny_sweep, tmp_path):
    out = tmp_path / "cli" / "sweep.html"
    exe = Path(sys.executable).with_name("rxsweep")
    done = subprocess.run([str(exe), "report", str(tiny_sweep), "--out", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(out.resolve())
    assert out.is_file() and 'id="fig-embeddings"' in out.read_text(encoding="utf-8")


def test_rank_and_report_need_no_shards(tiny_sweep, tmp_path):
    """A sweep folder whose shard folder is gone: ranking (with the plate-constrained and retrieval
    columns, from each trial's splits.parquet) and the report still work."""
    import json
    import shutil
    import subprocess
    import sys

    copy = tmp_path / "sweep"
    shutil.copytree(tiny_sweep, copy)
    meta = json.loads((copy / "sweep.json").read_text())
    meta["data"] = str(tmp_path / "deleted-shards")
    (copy / "sweep.json").write_text(json.dumps(meta))
    rxsweep = str(Path(sys.executable).with_name("rxsweep"))
    ranked = subprocess.run([rxsweep, "rank", str(copy), "--format", "json"], capture_output=True, text=True,
                            timeout=300)
    assert ranked.returncode == 0, ranked.stderr
    rows = json.loads(ranked.stdout)
    finished = [r for r in rows if r["status"] == "completed"]
    assert finished and all(r["heldout_val_plate_acc"] is not None for r in finished)
    assert all(not r.get("error") for r in rows)
    assert rows == json.loads(subprocess.run([rxsweep, "rank", str(tiny_sweep), "--format", "json"],
                                             capture_output=True, text=True, timeout=300).stdout)
    reported = subprocess.run([rxsweep, "report", str(copy)], capture_output=True, text=True, timeout=300)
    assert reported.returncode == 0 and (copy / "report.html").is_file(), reported.stderr
