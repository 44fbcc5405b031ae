"""The sweep as users run it: `python jobs/sweep.py` (local Ray) and `ray job submit` (a cluster),
with a killed sweep driver resumed and a killed Train worker recovered. Real processes throughout;
each Ray lives under its own RAY_TMPDIR and is stopped by the test that started it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from processes import (REPO, SWEEP_JOB, TRIAL_PROCESS, HeadNode, kill_tree, ray_tmpdir, shards_of, start_sweep, stop_ray_under,
                       train_workers_under, venv_without_rxsweep, wait_for)
from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.cli import main as rxsweep_main
from rxsweep.data.stream import open_shards
from rxsweep.metrics.embedding_scores import read_embeddings
from rxsweep.metrics.replicate_retrieval import replicate_map
from rxsweep.metrics.well_profiles import stack, well_profiles
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files

SPACES = REPO / "tests" / "spaces"
DANN_ONLY = {"lambda_max"}

pytestmark = pytest.mark.sweep


def epochs(trial_dir: Path) -> list[int]:
    path = trial_dir / run_files.METRICS_FILE
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines()] if path.exists() else []


# ----------------------------------------------------------------------------- the test sweep

def test_sweep_runs_every_trial_and_each_reports_held_out_accuracies(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    assert sweep.finished and sweep.meta["num_samples"] == 4 and not sweep.lost
    assert len(sweep.trials) == 4 and len({t.trial_id for t in sweep.trials}) == 4
    assert {t.config["domain_label"] for t in sweep.trials} == {"none", "plate", "experiment"}  # start_with
    assert sorted(t.config["resampling"] for t in sweep.trials) == ["adaptive", "none", "none", "none"]
    for trial in sweep.trials:
        assert trial.status in ("completed", "stopped"), (trial.trial_id, trial.status, trial.error)
        assert [m["epoch"] for m in trial.history] == list(range(1, len(trial.history) + 1))
        for m in trial.history:
            assert 0 <= m["heldout_val_acc"] <= 1 and 0 <= m["heldout_test_acc"] <= 1
            assert "heldout_val_acc/HUVEC" in m and "heldout_test_acc/U2OS" in m
        # every epoch carries the mixing objective of its own model, and its embeddings
        assert all(0 <= m["mixing"] <= 1 and m["mixing/k_ilisi"] >= 3 for m in trial.history)
        assert trial.embeddings is not None
        # and the replicate retrieval of the epoch's treatment wells: what copairs gives on the
        # last epoch's held-out well profiles, computed here
        last = trial.history[-1]
        wells = well_profiles(read_embeddings(trial.embeddings), "heldout_val")
        expected = replicate_map(stack(wells["embedding"]), wells["label"].to_numpy(),
                                 wells["experiment"].to_numpy(), wells["well_type"].to_numpy())
        assert last["heldout_val_replicate_map"] == pytest.approx(expected["map"])
        assert last["heldout_val_retrieved_fraction"] == pytest.approx(expected["retrieved_fraction"])
        assert "heldout_test_replicate_map" in last
        if trial.config["resampling"] == "adaptive":  # epoch 1 the plain warm-up
            assert trial.history[0]["ar_ess"] == 1.0
        else:
            assert not any(k.startswith("ar_") for k in trial.history[0])
        if trial.status == "completed":
            assert len(trial.history) == 2
        else:  # stopped by ASHA after its first epoch, not failed
            assert len(trial.history) == 1
    assert any(t.status == "completed" for t in sweep.trials)
    # the confirmation runs: each method's chosen configuration with 2 fresh seeds (every search
    # trial ran seed 0: seeds 1 and 2), all completed, none a search trial (not even the chosen one);
    # AR was searched: its best trial is confirmed too, and the methods' choices are plain-sampling trials
    record = sweep.confirm_record
    assert sorted(record) == ["ar", "dann", "erm"] and record["ar"]["base_method"] == "erm"
    assert {t.config["seed"] for t in sweep.trials} == {0}
    search_ids = {t.trial_id for t in sweep.trials}
    confirm_ids = {t.trial_id for t in sweep.confirm}
    assert len(sweep.confirm) == 2 * len(record)  # every seed of every method a new run
    by_id = {t.trial_id: t for t in sweep.confirm}
    for method, choice in record.items():
        assert choice["search_seeds"] == [0] and choice["seeds"] == [1, 2]
        assert choice["source_trial"] in search_ids and choice["source_trial"] not in choice["trial_ids"]
        assert set(choice["trial_ids"]) <= confirm_ids and not set(choice["trial_ids"]) & search_ids
        runs = [by_id[i] for i in choice["trial_ids"]]
        assert all(r.status == "completed" for r in runs)
        assert [r.config["seed"] for r in runs] == [1, 2] and all(r.method == choice["base_method"] for r in runs)
        assert all((r.config["resampling"] == "adaptive") == (method == "ar") for r in runs)
        assert all({k: r.config[k] for k in choice["params"]} == choice["params"] for r in runs)
        # judged on their last epoch only: a confirmation run evaluates the held-out experiments
        # then, not before
        assert all("heldout_test_acc" not in m and "mixing" not in m for r in runs for m in r.history[:-1])
        assert all("heldout_test_acc" in r.history[-1] and r.embeddings is not None for r in runs)
        if method == "ar":  # run to the last epoch whatever ASHA did: epoch 1 plain, then AR's draws
            assert all(len(r.history) == 2 and r.history[0]["ar_ess"] == 1.0 and r.history[1]["ar_ess"] < 1
                       for r in runs), [r.history for r in runs]
    # every trial's run folder holds its split as a value: one row a site of the shards, one split
    index = open_shards(shards_of(tiny_sweep))
    splits = [run_files.read_splits(t.path) for t in sweep.trials]
    assert all(sorted(s["site_id"]) == sorted(index.table["site_id"]) for s in splits)
    assert all(s.set_index("site_id")["split"].sort_index().equals(splits[0].set_index("site_id")["split"]
                                                                   .sort_index()) for s in splits)
    # the Optuna study on disk saw every trial and holds both objectives of the finished ones
    study = optuna.load_study(study_name="tiny", storage=sweep.optuna_storage)
    assert len(study.trials) == 4
    finished = {t.status for t in sweep.trials}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == sum(t.status == "completed" for t in sweep.trials), finished
    for t in complete:
        assert len(t.values) == 2


def test_job_that_ingests_first_still_runs_trials_side_by_side(tiny_sweep):
    """jobs/sweep.py without --data ingests (which starts Ray) before the sweep: the Ray it starts
    must hold as many 1-CPU trials as the sweep's own would (2 of the 4 on this 2-core machine)."""
    from conftest import JOB_LOG, TINY_SPACE
    from rxsweep.cluster import local_cpus
    from rxsweep.tuning.space_yaml import load_space
    from rxsweep.tuning.sweep import concurrent_trials

    printed = (tiny_sweep.parent.parent / JOB_LOG).read_text()
    expected = concurrent_trials({"CPU": local_cpus()}, load_space(TINY_SPACE).trial_resources(), 4)
    assert f"4 trials, up to {expected} at a time" in printed, printed[:2000]


def test_conditional_parameters_appear_only_under_their_condition(tiny_sweep):
    sweep = load_sweep(tiny_sweep)
    for trial in sweep.trials:
        dann = trial.config["domain_label"] != "none"
        assert bool(DANN_ONLY & set(trial.params)) == dann, trial.params
        assert "lr" in trial.params
    study = optuna.load_study(study_name="tiny", storage=sweep.optuna_storage)
    for t in study.trials:
        assert ("lambda_max" in t.params) == (t.params["domain_label"] != "none"), t.params


# ------------------------------------------------------------------- a killed driver, resumed

@pytest.mark.parametrize("at_uri", [False, True], ids=["path", "uri"])
def test_killed_sweep_driver_resumes_with_every_trial_exactly_once(at_uri, tiny_sweep, tmp_path, monkeypatch, capsys):
    """SIGKILL the sweep driver (and its local Ray) while the second of two 3-epoch trials is
    between checkpoints; `--resume` finishes it from its checkpoint and never reruns the first.
    At a URI (file://, through pyarrow's filesystems as s3:// is) the shards are read in place and
    the resuming driver starts from an empty staging folder, as on another machine: all it resumes
    from (the study, Tune's state, the trials' checkpoints) comes from the URI."""
    storage, tmpdir = tmp_path / "store", ray_tmpdir()
    data = f"file://{shards_of(tiny_sweep)}" if at_uri else str(shards_of(tiny_sweep))
    args = ["--space", str(SPACES / "one_trial.yaml"), "--data", data,
            "--storage", f"file://{storage}" if at_uri else str(storage),
            "--name", "resumed", "--num-samples", "2", "--max-concurrent", "1"]
    env = {**os.environ, "RAY_TMPDIR": tmpdir}
    sweep_dir = storage / "sweeps" / "resumed"  # at a URI: what the mirrors pushed there
    log = tmp_path / "first.log"
    proc = start_sweep(args, {**env, "RXSWEEP_STAGING": str(tmp_path / "staging-1")}, log)
    try:
        def second_trial_between_checkpoints():
            trials = sorted((sweep_dir / sweep_files.TRIALS_DIR).glob("*"), key=lambda p: p.stat().st_mtime)
            done = [t for t in trials if (fileio.read_json(t / sweep_files.STATUS_FILE) or {}).get("status")
                    in ("completed", "stopped")]
            running = [t for t in trials if t not in done and epochs(t) in ([1], [1, 2])]
            return (done[0], running[0]) if done and running else None

        first, second = wait_for(second_trial_between_checkpoints, 600, "trial 2's first checkpoint", proc, log)
        first_metrics = (first / run_files.METRICS_FILE).read_text()
        second_epoch1 = (second / run_files.METRICS_FILE).read_text().splitlines()[0]
        kill_tree(proc)
    finally:
        kill_tree(proc)
        stop_ray_under(tmpdir)
    assert not fileio.read_json(sweep_dir / sweep_files.SWEEP_FILE)["finished"]
    # the kill landed while the second trial was mid-run (its own records, read after the kill):
    # what follows checks a resume, not a trial that had finished already
    assert epochs(second) in ([1], [1, 2]) and not (fileio.read_json(second / sweep_files.STATUS_FILE) or {}).get(
        "ended_at"), epochs(second)

    if at_uri:  # another machine: the same staging path (the default is), nothing in it
        shutil.rmtree(tmp_path / "staging-1")
        moved = subprocess.run([sys.executable, str(SWEEP_JOB), *args, "--resume"], capture_output=True, text=True,
                               env={**env, "RXSWEEP_STAGING": str(tmp_path / "elsewhere")}, timeout=300)
        assert moved.returncode == 2 and "RXSWEEP_STAGING set as it was" in moved.stderr, moved.stderr[-2000:]
    resumed_log = tmp_path / "resume.log"
    again = start_sweep([*args, "--resume"], {**env, "RXSWEEP_STAGING": str(tmp_path / "staging-1")}, resumed_log)
    try:
        assert again.wait(timeout=600) == 0, resumed_log.read_text()[-4000:]
    finally:
        kill_tree(again)
        stop_ray_under(tmpdir)
    sweep = load_sweep(sweep_dir)
    assert sweep.finished and sweep.meta["data"] == data
    assert sorted(t.trial_id for t in sweep.trials) == sorted([first.name, second.name])  # no trial lost or added
    by_id = {t.trial_id: t for t in sweep.trials}
    assert (first / run_files.METRICS_FILE).read_text() == first_metrics  # finished trial not run again
    resumed = by_id[second.name]
    assert resumed.status == "completed" and epochs(second) == [1, 2, 3]
    # epoch 1 came from the checkpoint, not from training it again (its timings would differ)
    assert (second / run_files.METRICS_FILE).read_text().splitlines()[0] == second_epoch1
    if not at_uri:
        return
    assert sorted(p.name for p in run_files.checkpoints(second)) == ["checkpoint_epoch0002", "checkpoint_epoch0003"]
    assert (sweep_dir / "report.html").is_file() and not list(sweep_dir.rglob(".rxsweep-*"))
    # `rxsweep rank URI` (a third staging folder) prints what `rxsweep rank FOLDER` prints
    monkeypatch.setenv("RXSWEEP_STAGING", str(tmp_path / "staging-3"))
    capsys.readouterr()
    assert rxsweep_main(["rank", f"file://{sweep_dir}", "--format", "csv", "--quick"]) == 0
    from_uri = capsys.readouterr().out
    assert rxsweep_main(["rank", str(sweep_dir), "--format", "csv", "--quick"]) == 0
    assert from_uri == capsys.readouterr().out and first.name in from_uri


STOPPED_SPACE = """
name: stopped
objectives: [heldout_val_acc]
num_samples: 1
seed: 0
scheduler: {type: fifo}
resources: {workers: 1, cpus_per_worker: 1}
confirm: {seeds: 1}
fixed: {epochs: 2, batch_size: 32, max_steps_per_epoch: 4, embedding_dim: 64, domain_width: 128,
        n_val_per_cell_type: 2, n_test_per_cell_type: 1}
parameters:
  lr: {loguniform: [1.0e-3, 1.0e-2]}
"""


def test_a_sweep_its_storage_stopped_names_the_path_and_stage_and_resume_continues_it(tiny_sweep, tmp_path):
    """The sweep folder refuses new entries once the search runs (mode 0555, and immutable for
    root, whom no mode bit stops): the sweep stops with one line naming the path and the stage,
    and says that --resume continues it; once writable again, --resume does."""
    sweep_dir = tmp_path / "store" / "sweeps" / "stopped"
    (tmp_path / "space.yaml").write_text(STOPPED_SPACE)
    args = ["--space", str(tmp_path / "space.yaml"), "--data", str(shards_of(tiny_sweep)),
            "--storage", str(tmp_path / "store")]
    tmpdir = ray_tmpdir()
    env = {**os.environ, "RAY_TMPDIR": tmpdir}
    immutable = os.geteuid() == 0

    def lock(on: bool) -> None:
        if on:
            sweep_dir.chmod(0o555)
        if immutable:
            subprocess.run(["chattr", "+i" if on else "-i", str(sweep_dir)], check=True)
        if not on:
            sweep_dir.chmod(0o755)

    log = tmp_path / "first.log"
    proc = start_sweep(args, env, log)
    try:
        wait_for(lambda: list((sweep_dir / sweep_files.TRIALS_DIR).glob("*/" + run_files.METRICS_FILE)), 600,
                 "the search's first epoch", proc, log)
        lock(True)
        proc.wait(timeout=600)
    finally:
        kill_tree(proc)
        stop_ray_under(tmpdir)
        if sweep_dir.exists():
            lock(False)
    said = log.read_text()
    errors = [line for line in said.splitlines() if "error:" in line and line.startswith("rxsweep")]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in said, said[-4000:]
    assert str(sweep_dir) in errors[0] and "[stage: " in errors[0], errors[0]
    assert f"the sweep in {sweep_dir} stopped before it finished; the same command with --resume continues it" in said

    resumed = subprocess.run([sys.executable, str(SWEEP_JOB), *args, "--resume"], capture_output=True, text=True,
                             env=env, timeout=900)
    stop_ray_under(tmpdir)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    sweep = load_sweep(sweep_dir)
    assert sweep.finished and [t.status for t in [*sweep.trials, *sweep.confirm]] == ["completed"] * 2


# ------------------------------------------- ray job submit, and a Train worker killed mid-trial

@pytest.fixture(scope="module")
def head_node(tmp_path_factory):
    node = HeadNode(venv_without_rxsweep(tmp_path_factory.mktemp("cluster") / "venv"))
    yield node
    node.stop()


def test_ray_job_submit_runs_a_sweep_and_a_killed_worker_resumes_from_its_checkpoint(head_node, tiny_sweep,
                                                                                     tmp_path):
    """`ray job submit --working-dir . -- python jobs/sweep.py ...` on a cluster whose Python has
    no rxsweep; while the trial trains, its process (a single-worker trial trains in it) is
    SIGKILLed after the first checkpoint. Tune starts the trial again (the space allows one worker
    restart), it resumes from that checkpoint and the job still succeeds."""
    storage = tmp_path / "store"
    submitted = head_node.ray_cli(
        "job", "submit", "--address", head_node.address, "--working-dir", ".", "--no-wait", "--",
        "python", "jobs/sweep.py", "--space", str(SPACES / "one_trial.yaml"), "--data",
        str(shards_of(tiny_sweep)), "--storage", str(storage))
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    job_id = next(w for w in submitted.stdout.split() + submitted.stderr.split() if w.startswith("'raysubmit_"))
    job_id = job_id.strip("'")
    trials = storage / "sweeps" / "one_trial" / sweep_files.TRIALS_DIR

    def first_checkpoint():
        found = list(trials.glob("*/checkpoint_epoch0001"))
        return found[0].parent if found and epochs(found[0].parent) == [1] else None

    trial = wait_for(first_checkpoint, 600, "the trial's first checkpoint")
    epoch1 = (trial / run_files.METRICS_FILE).read_text().splitlines()[0]
    workers = wait_for(lambda: train_workers_under(head_node.tmpdir, TRIAL_PROCESS), 60, "the trial's process")
    assert len(workers) == 1
    workers[0].kill()

    logs = head_node.ray_cli("job", "logs", "--address", head_node.address, "--follow", job_id, timeout=600)
    status = head_node.ray_cli("job", "status", "--address", head_node.address, job_id)
    assert f"Job '{job_id}' succeeded" in status.stdout + status.stderr, (status.stdout + logs.stdout)[-4000:]
    # the job log shows the sweep's own progress; Ray's and Tune's output is in the sweep's driver log
    assert "[search 1/1] completed" in logs.stdout and "Trial status:" not in logs.stdout, logs.stdout[-4000:]
    driver_log = (storage / "sweeps" / "one_trial" / sweep_files.DRIVER_LOG).read_text()
    assert "Trial status:" in driver_log and "1 TERMINATED" in driver_log
    assert "No module named 'rxsweep'" not in logs.stdout + driver_log
    assert epochs(trial) == [1, 2, 3]  # every epoch once: the restart resumed at epoch 2
    assert (trial / run_files.METRICS_FILE).read_text().splitlines()[0] == epoch1
    sweep = load_sweep(storage / "sweeps" / "one_trial")
    assert sweep.finished and [t.status for t in sweep.trials] == ["completed"]
    assert str(storage / "sweeps" / "one_trial") in logs.stdout.splitlines()  # the job prints the sweep folder
    # the cluster's state API (what the dashboard shows) knows the trial's processes: the killed
    # one and its replacement
    trials = [a for a in head_node.actors() if a["class_name"] == "ImplicitFunc"]
    assert sorted(a["state"] for a in trials) == ["DEAD", "DEAD"], trials
