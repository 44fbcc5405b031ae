"""A sweep whose --storage and --data are URIs (file://, through pyarrow's filesystems as s3:// and
gs:// are): the shards are read in place, every process works in a staging folder of its own and
mirrors it, and a driver killed mid-sweep is resumed by a driver with an empty staging folder (as
on another machine) from what the URI holds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from processes import REPO, kill_tree, ray_tmpdir, shards_of, start_sweep, stop_ray_under, wait_for
from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.cli import main as rxsweep_main
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files

pytestmark = pytest.mark.slow


def epochs(trial_dir: Path) -> list[int]:
    path = trial_dir / run_files.METRICS_FILE
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()] if path.exists() else []


def test_a_sweep_at_a_uri_resumes_from_the_uri_with_a_new_staging_folder(tiny_sweep, tmp_path, monkeypatch, capsys):
    bucket, tmpdir = tmp_path / "bucket", ray_tmpdir()
    data_uri = f"file://{shards_of(tiny_sweep)}"
    args = ["--space", str(REPO / "tests" / "spaces" / "one_trial.yaml"), "--data", data_uri,
            "--storage", f"file://{bucket}", "--name", "at-uri", "--num-samples", "2", "--max-concurrent", "1"]
    at_uri = bucket / "sweeps" / "at-uri"
    env = {**os.environ, "RAY_TMPDIR": tmpdir}
    log = tmp_path / "first.log"
    proc = start_sweep(args, {**env, "RXSWEEP_STAGING": str(tmp_path / "staging-1")}, log)
    try:
        def second_trial_between_checkpoints():  # read at the URI: what the mirrors pushed
            trials = sorted((at_uri / sweep_files.TRIALS_DIR).glob("*"), key=lambda p: p.stat().st_mtime)
            done = [t for t in trials if (fileio.read_json(t / sweep_files.STATUS_FILE) or {}).get("status")
                    == "completed" and epochs(t) == [1, 2, 3]]
            running = [t for t in trials if t not in done and epochs(t) in ([1], [1, 2])
                       and list(t.glob("checkpoint_epoch*/state.pt"))]
            return (done[0], running[0]) if done and running else None

        first, second = wait_for(second_trial_between_checkpoints, 600, "trial 2's first checkpoint at the URI",
                                 proc, log)
        first_metrics = (first / run_files.METRICS_FILE).read_text()
        second_epoch1 = (second / run_files.METRICS_FILE).read_text().splitlines()[0]
        kill_tree(proc)
    finally:
        kill_tree(proc)
        stop_ray_under(tmpdir)
    assert not fileio.read_json(at_uri / sweep_files.SWEEP_FILE)["finished"]
    assert (at_uri / sweep_files.OPTUNA_DB).is_file() and list((at_uri / sweep_files.TUNE_DIR).glob("experiment_state*"))

    # Another machine: a staging folder that has never seen this sweep.
    again = start_sweep([*args, "--resume"], {**env, "RXSWEEP_STAGING": str(tmp_path / "staging-2")},
                        tmp_path / "resume.log")
    try:
        assert again.wait(timeout=600) == 0, (tmp_path / "resume.log").read_text()[-4000:]
    finally:
        kill_tree(again)
        stop_ray_under(tmpdir)
    printed = (tmp_path / "resume.log").read_text().splitlines()
    assert Path(printed[-1]).is_relative_to(tmp_path / "staging-2")  # the driver worked in its own staging

    sweep = load_sweep(at_uri)  # everything is at the URI
    assert sweep.finished and sweep.meta["data"] == data_uri
    assert sorted(t.trial_id for t in sweep.trials) == sorted([first.name, second.name])
    assert (first / run_files.METRICS_FILE).read_text() == first_metrics  # not run again
    assert {t.trial_id: t.status for t in sweep.trials}[second.name] == "completed" and epochs(second) == [1, 2, 3]
    # the resumed trial started from the checkpoint it pulled from the URI, not from epoch 1
    assert (second / run_files.METRICS_FILE).read_text().splitlines()[0] == second_epoch1
    assert sorted(p.name for p in second.glob("checkpoint_epoch*")) == ["checkpoint_epoch0002", "checkpoint_epoch0003"]
    assert (at_uri / "report.html").is_file() and not list(at_uri.rglob(".rxsweep-*"))

    # `rxsweep rank URI` reads the sweep from the URI (a third staging folder) as from its folder
    monkeypatch.setenv("RXSWEEP_STAGING", str(tmp_path / "staging-3"))
    capsys.readouterr()
    assert rxsweep_main(["rank", f"file://{at_uri}", "--format", "csv", "--quick"]) == 0
    from_uri = capsys.readouterr().out
    assert rxsweep_main(["rank", str(at_uri), "--format", "csv", "--quick"]) == 0
    assert from_uri == capsys.readouterr().out and first.name in from_uri
