"""What `rxsweep sweep` and `rxsweep rank` print: at most 120 columns but for paths, in a fixed
order (the verdict's sentence, the verdict table, the top trials, the paths, the sweep folder last),
and none of Ray's own output, which goes to the sweep's logs/driver.log.

The renderers and `rank` run here on tables and sweep folders built by hand (fast tier); a real
`jobs/sweep.py` run and the session's tiny sweep show the whole of it (sweep tier)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rxsweep import fileio
from rxsweep.analysis.ranking import add_ranks
from rxsweep.analysis.terminal_view import print_sweep_end
from rxsweep.cli import main as rxsweep_main
from rxsweep.console import WIDTH
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files

METRICS = ["heldout_test_acc", "mixing", "replicate_map"]
SUMMARY = ("Against ERM, DANN was better on mixing and worse on replicate mAP, with no detectable difference on "
           "accuracy; no other arm was better.")
#: Ray's own log lines ("2026-01-01 10:00:00,000	INFO worker.py:2029 -- ...") and Tune's trial tables.
RAY_LINE = re.compile(r"^\d{4}-\d\d-\d\d [\d:,]+\s+(INFO|WARNING)\s|Trial status:|^\(\w+ pid=\d+")


def wide_lines(text: str, paths: list) -> list[str]:
    """Lines over WIDTH that name none of ``paths`` (a path is printed whole, to be copied)."""
    return [line for line in text.splitlines() if len(line) > WIDTH and not any(str(p) in line for p in paths)]


def _metric(mean, word):
    return {"mean": mean, "lo": mean - 0.02, "hi": mean + 0.03, "vs_erm": word, "seed_values": [mean, mean],
            "seed_sd": 0.01}


def verdict_dict() -> dict:
    words = {"ERM": [None] * 3, "DANN": ["no detectable difference", "better", "worse"],
             "CDANN": ["worse"] * 3, "ERM + Harmony": ["no detectable difference"] * 3}
    arms = [{"name": name, "method": name.lower(), "metrics": {m: _metric(0.3 + 0.01 * j, w[j])
                                                               for j, m in enumerate(METRICS)}}
            for name, w in words.items()]
    arms.append({"name": "features + LR", "method": "features",
                 "metrics": {m: {"mean": math.nan, "lo": None, "hi": None, "vs_erm": None} for m in METRICS}})
    return {"summary": SUMMARY, "arms": arms, "metrics": METRICS, "experiments": ["A", "B", "C", "D"], "level": 0.95,
            "n_words": 12, "resampled": {"experiments_of": ["HUVEC"]}}


def ranking(n: int = 7) -> pd.DataFrame:
    """A ranked table as rank_sweep returns it: every searched parameter of the default space."""
    rows = []
    for i in range(n):
        dann = i % 3 != 0
        rows.append({"trial_id": f"trial{i:03d}", "status": "stopped" if i % 2 else "completed",
                     "method": ("erm", "dann", "cdann")[i % 3], "domain_label": ("none", "plate", "experiment")[i % 3],
                     "adversary": "cdann" if i % 3 == 2 else ("dann" if dann else math.nan),
                     "domain_sites": "controls" if dann else math.nan, "lambda_schedule": "ganin" if dann else math.nan,
                     "lambda_max": 0.31 * i if dann else math.nan, "lr": 0.00354, "weight_decay": 1.2e-5,
                     "normalization": "plate_controls", "resampling": "adaptive" if i == 4 else "none",
                     "ar_bins": 50 if i == 4 else math.nan, "ar_smoothing": 1.2e-3 if i == 4 else math.nan,
                     "ar_mix": 0.31 if i == 4 else math.nan, "epochs": 4 if i % 2 else 8,
                     "heldout_val_acc": 0.1 + 0.02 * i, "heldout_val_acc_all": 0.3, "heldout_val_top5": 0.5,
                     "mixing": 0.5 + 0.03 * (i % 4), "mixing/ilisi": 0.4, "heldout_test_acc": 0.2})
    rows.append({"trial_id": "features + LR", "status": "baseline", "method": "features", "heldout_val_acc": 0.24,
                 "mixing": 0.9})
    return add_ranks(pd.DataFrame(rows))


def test_the_end_of_a_sweep_is_the_sentence_the_verdict_the_top_5_and_the_paths_in_120_columns():
    sweep_dir = Path("/data/results/sweeps") / ("a-long-sweep-name-" * 6).rstrip("-")
    table, out = ranking(), io.StringIO()
    print_sweep_end(verdict_dict(), table, sweep_dir / "report.html", sweep_dir, file=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[-2:] == [f"report: {sweep_dir / 'report.html'}", str(sweep_dir)]  # whole, the folder last
    assert len(lines[-1]) > WIDTH and not wide_lines(text, [sweep_dir])
    # in order: the sentence (wrapped at 120), the verdict table, the top 5 trials
    flat = " ".join(text.split())
    order = [flat.index(SUMMARY), flat.index("each arm against ERM"), flat.index("Top 5 of 7 trials"),
             flat.index("report: ")]
    assert order == sorted(order), order
    verdict_part = flat[order[1]:order[2]]
    for arm in ("ERM", "DANN", "CDANN", "ERM + Harmony", "features + LR"):
        assert f" {arm} " in verdict_part
    assert "0.310 [0.290, 0.340]" in verdict_part and "better" in verdict_part and "worse" in verdict_part
    assert "no detectable difference" in verdict_part and "reference" in verdict_part
    top = flat[order[2]:order[3]]
    shown = [t for t in table["trial_id"] if t.startswith("trial") and t in top]
    assert shown == list(table["trial_id"][:5])  # the first 5 of the ranking, in its order
    assert "features + LR" not in top  # reference rows are no trials
    assert "DANN-plate + AR" in top and "lr 3.5e-3" in top and "val acc" in top and "stopped at 4" in top


def test_a_sweep_without_confirmation_runs_says_so_instead_of_a_verdict():
    out = io.StringIO()
    print_sweep_end(None, ranking(2), "/r/report.html", "/r", file=out)
    text = out.getvalue()
    assert text.lstrip().startswith("No verdict: this sweep ran no confirmation runs")
    assert "each arm against ERM" not in text and "2 trials, ranked" in text
    assert text.splitlines()[-1] == "/r" and not wide_lines(text, [])


# ----------------------------------------------------------------------- `rxsweep rank`, by hand

@pytest.fixture
def sweep_folder(tmp_path) -> Path:
    """A sweep folder of 7 trials as the sweep writes them (no embeddings: ranking only)."""
    folder = tmp_path / "sweep"
    params = ["domain_label", "adversary", "lr", "lambda_max", "weight_decay", "normalization"]
    fileio.write_json(folder / sweep_files.SWEEP_FILE, {"format": sweep_files.FORMAT, "name": "by-hand",
                                                        "params": params, "finished": True})
    for row in ranking().to_dict(orient="records")[:7]:
        trial = folder / sweep_files.TRIALS_DIR / row["trial_id"]
        sampled = {p: row[p] for p in params if isinstance(row[p], str) or not math.isnan(row[p])}
        fileio.write_json(trial / sweep_files.PARAMS_FILE, sampled)
        fileio.write_json(trial / sweep_files.STATUS_FILE, {"trial_id": row["trial_id"], "status": row["status"]})
        (trial / run_files.CONFIG_FILE).write_text(json.dumps({**sampled, "epochs": 8}))
        run_files.write_history(trial / run_files.METRICS_FILE, [
            {"epoch": e, "heldout_val_acc": row["heldout_val_acc"], "mixing": row["mixing"],
             "heldout_test_acc": 0.2} for e in range(1, int(row["epochs"]) + 1)])
    return folder


def test_rank_prints_a_compact_table_by_default_every_column_with_wide_and_csv_or_json_for_scripts(
        sweep_folder, tmp_path, capsys):
    assert rxsweep_main(["rank", str(sweep_folder)]) == 0
    compact = capsys.readouterr().out
    assert not wide_lines(compact, []) and "7 trials, ranked" in compact and "val acc" in compact
    assert "heldout_val_acc_all" not in compact and "CDANN-experiment" in compact

    assert rxsweep_main(["rank", str(sweep_folder), "--wide"]) == 0
    wide = capsys.readouterr().out
    assert "heldout_val_acc_all" in wide.splitlines()[0] and "trial006" in wide  # today's table, every column

    assert rxsweep_main(["rank", str(sweep_folder), "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(csv) == 7 and {"trial_id", "lr", "heldout_val_acc", "mixing", "rank", "pareto"} <= set(csv.columns)

    assert rxsweep_main(["rank", str(sweep_folder), "--format", "json", "--quick"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["trial_id"] for r in records] == list(csv["trial_id"]) and records[0]["rank"] == csv["rank"][0]

    out = tmp_path / "ranking.txt"
    assert rxsweep_main(["rank", str(sweep_folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert " ".join(out.read_text().split()) == " ".join(compact.split())  # the same table, without colours


# ---------------------------------------------------------------- a real sweep, as a user runs it

@pytest.mark.sweep
def test_a_sweep_says_its_phases_and_trials_and_ends_in_120_columns_with_ray_in_its_log(tiny_sweep, tmp_path):
    """`python jobs/sweep.py` on one 3-epoch trial: a line a phase and a trial event, none of Ray's
    or Tune's own lines (they are in SWEEP/logs/driver.log), the end in order, the folder last."""
    from processes import SWEEP_JOB, ray_tmpdir, shards_of, stop_ray_under

    shards, storage, tmpdir = shards_of(tiny_sweep), tmp_path / "store", ray_tmpdir()
    try:
        done = subprocess.run([sys.executable, str(SWEEP_JOB), "--space", str(Path(__file__).parent / "spaces" /
                                                                              "one_trial.yaml"),
                               "--data", str(shards), "--storage", str(storage)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=900, env={**os.environ, "RAY_TMPDIR": tmpdir})
    finally:
        stop_ray_under(tmpdir)
    said = done.stdout
    assert done.returncode == 0, said[-4000:]
    sweep_dir = storage / "sweeps" / "one_trial"
    lines = said.splitlines()
    assert lines[-1] == str(sweep_dir) and lines[-2] == f"report: {sweep_dir / 'report.html'}"
    assert not wide_lines(said, [storage, shards]), wide_lines(said, [storage, shards])
    assert not [line for line in lines if RAY_LINE.search(line)], said
    assert len(lines) < 60, said  # (it was ~200 before: Tune's boxes)
    for phase in ("data", "ray", "search", "verdict", "report"):
        assert f"{phase}: done in " in said, phase
    trial = next((sweep_dir / sweep_files.TRIALS_DIR).iterdir()).name
    for event in ("started  lr ", "epoch 1/3, held-out val acc ", "epoch 3/3, held-out val acc ",
                  "[search 1/1] completed, held-out val acc "):
        assert re.search(rf"trial {trial}  DANN-experiment +{re.escape(event)}", said), event
    flat = " ".join(said.split())
    order = [flat.index("No verdict: this sweep ran no confirmation runs"), flat.index("1 trial, ranked"),
             flat.index(f"report: {sweep_dir}")]
    assert order == sorted(order)
    log = (sweep_dir / sweep_files.DRIVER_LOG).read_text()
    assert "INFO worker.py" in log and "Trial status:" in log and f"Trial {trial} completed" in log
    assert "Ray's and Ray Tune's own output: " + str(sweep_dir / sweep_files.DRIVER_LOG) in flat  # (wrapped)


@pytest.mark.sweep
def test_the_tiny_sweep_ends_with_its_verdict_sentence_table_top_trials_and_paths(tiny_sweep):
    """The session's sweep (confirmation runs, a verdict) as jobs/sweep.py printed it."""
    from conftest import JOB_LOG

    from rxsweep.analysis.verdict import read_verdict

    said = (tiny_sweep.parent.parent / JOB_LOG).read_text()  # stderr, then stdout
    roots = [tiny_sweep.parent.parent]
    assert not wide_lines(said, roots) and not [line for line in said.splitlines() if RAY_LINE.search(line)]
    flat = " ".join(said.split())
    summary = " ".join(read_verdict(tiny_sweep)["summary"].split())
    order = [flat.index(summary), flat.index("each arm against ERM"), flat.index("4 trials, ranked"),
             flat.index(f"report: {tiny_sweep}")]
    assert order == sorted(order) and said.splitlines()[-1] == str(tiny_sweep)
    assert "[confirmation 6/6] completed" in said  # the confirmation runs counted too
