"""A sweep submitted with `ray job submit` to a `ray start --head` cluster with just enough CPUs
for one trial at a time, and for two: it finishes, runs as many trials at once as the cluster
holds (two 1-CPU trials on a 2-CPU node), and leaves no placement group of its job reserved, with
ASHA deciding which trials stop and with a trial that fails.

Why these tests exist: Ray Train V2 under Tune leaked a worker group's placement group (see
rxsweep.training.placement_groups); on a cluster with room for one trial the next trial then
waited for resources forever. A leak shows here two ways, neither a timing: the job does not
finish (the test's timeout), or a group of the job is still reserved after its trial ended (the
sweep driver's guard had to remove it). How long slots stayed idle is measured by
bench/sweep_overhead.py, not asserted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import psutil
import pytest

from processes import HeadNode, shards_of, venv_without_rxsweep, wait_for
from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.training import run_files
from rxsweep.training.run_files import read_history
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space_yaml import load_space
from rxsweep.tuning.sweep import concurrent_trials
from test_sweep import SPACES
from timeline import asha_statuses, busy_intervals, first_groups_the_guard_released, longest_idle_slot, most_at_once

@pytest.fixture(scope="module")
def cluster_venv(tmp_path_factory) -> Path:
    return venv_without_rxsweep(tmp_path_factory.mktemp("cluster-venv") / "venv")


def submit(node: HeadNode, args: list[str], agent_timeout: float = 120) -> str:
    """`ray job submit --no-wait`; its submission id. A head node just started may answer "No
    available agent to submit job, please try again later" while its job agent starts (seen on
    this loaded 2-core machine): like a user, submit again until the agent takes it."""
    def submitted_to_an_agent():
        done = node.ray_cli("job", "submit", "--address", node.address, "--working-dir", ".", "--no-wait",
                            "--", "python", "jobs/sweep.py", *args)
        return done if "No available agent" not in done.stderr else None

    submitted = wait_for(submitted_to_an_agent, agent_timeout, "the head node's job agent")
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    return next(w for w in submitted.stdout.split() + submitted.stderr.split()
                if w.startswith("'raysubmit_")).strip("'")


def finish(node: HeadNode, submission_id: str, timeout: float = 1800) -> str:
    """Wait for the job; return its log. Fails (with the log) unless it succeeded."""
    logs = node.ray_cli("job", "logs", "--address", node.address, "--follow", submission_id, timeout=timeout)
    status = node.ray_cli("job", "status", "--address", node.address, submission_id)
    assert f"Job '{submission_id}' succeeded" in status.stdout + status.stderr, logs.stdout[-5000:]
    return logs.stdout


def reserved_groups_of_job(node: HeadNode, submission_id: str) -> list[dict]:
    jobs = json.loads(node.ray_cli("list", "jobs", "--address", node.address, "--format", "json").stdout)
    job_id = next(j["job_id"] for j in jobs if j.get("submission_id") == submission_id)
    listed = node.ray_cli("list", "placement-groups", "--address", node.address, "--detail", "--limit", "10000",
                          "--format", "json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    return [pg for pg in json.loads(listed.stdout)
            if pg["creator_job_id"] == job_id and pg["state"] != "REMOVED"]


def test_the_timeline_readers_on_hand_made_timelines():
    # two slots; the third trial starts 30 s after the first slot frees up
    assert longest_idle_slot([(0, 10), (0, 50), (40, 60)], slots=2) == 30
    assert longest_idle_slot([(0, 10), (0, 50), (11, 60)], slots=2) == 1
    assert longest_idle_slot([(0, 10), (12, 20)], slots=1) == 2
    assert longest_idle_slot([(0, 10), (0, 20)], slots=2) == 0  # nothing waits: idle slots are fine
    assert most_at_once([(0, 10), (10, 20), (20, 30)]) == 1  # one ends as the next starts
    assert most_at_once([(0, 10), (5, 20), (6, 7), (30, 40)]) == 3


def test_asha_statuses_decide_as_rays_own_asha_does():
    """The test oracle against Ray's ASHA itself, on 300 random one-at-a-time sweeps (ties and
    equal values included): every trial's fate agrees."""
    import numpy as np
    from ray.tune.schedulers.async_hyperband import _Bracket

    rng = np.random.default_rng(0)
    for _ in range(300):
        max_t, grace, rf = int(rng.integers(2, 9)), int(rng.integers(1, 3)), float(rng.choice([2, 3, 4]))
        if grace >= max_t:
            continue
        bracket, expected = _Bracket(grace, max_t, rf, s=0), []
        histories = [list(rng.integers(0, 4, size=int(rng.integers(0, max_t + 1))) / 4) for _ in range(6)]
        for i, history in enumerate(histories):
            trial, status = type("Trial", (), {"trial_id": str(i)})(), "ended"
            for epoch, value in enumerate(history, start=1):
                if epoch >= max_t:  # AsyncHyperBandScheduler.on_trial_result stops it at max_t
                    status = "completed"
                    break
                if bracket.on_result(trial, epoch, value) == "STOP":
                    status = "stopped"
                    break
            expected.append(status)
        assert asha_statuses(histories, max_t, grace, rf) == expected, (histories, max_t, grace, rf)


def check_sweep_released_everything(node: HeadNode, submission_id: str, sweep_dir: Path, slots: int) -> None:
    """Finished, no trial lost, no group of the job left reserved, and as many trials at once as
    the cluster holds: never more, and, with trials waiting, not fewer."""
    sweep = load_sweep(sweep_dir)
    assert sweep.finished and not sweep.lost
    assert all(t.status in ("completed", "stopped", "error") for t in sweep.trials)
    assert first_groups_the_guard_released(sweep_dir) == []
    assert reserved_groups_of_job(node, submission_id) == []
    assert most_at_once(busy_intervals(sweep_dir)) == min(slots, len(sweep.trials)), busy_intervals(sweep_dir)


def kill_a_trial_in_its_first_epoch(sweep_dir: Path, timeout: float = 600) -> tuple[Path, float]:
    """SIGKILL the process of a trial after the first (a single-worker trial trains in its own
    process, which may be a finished trial's, reused) before it reports an epoch; return the
    trial's folder and when it was killed. The process is the one the trial recorded itself
    running in (processes.jsonl), read before the kill."""
    target, killed_at = None, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = list((sweep_dir / sweep_files.TRIALS_DIR).glob("*")) if sweep_dir.exists() else []
        ended = {f for f in folders if (fileio.read_json(f / sweep_files.STATUS_FILE) or {}).get("ended_at")}
        if target is not None:
            if target in ended:
                return target, killed_at
        elif ended:
            starting = [f for f in folders if f not in ended and fileio.read_jsonl(f / sweep_files.PROCESSES_FILE)
                        and not read_history(f / run_files.METRICS_FILE)]
            if starting:
                target, killed_at = starting[0], time.time()
                psutil.Process(fileio.read_jsonl(target / sweep_files.PROCESSES_FILE)[-1]["pid"]).kill()
        time.sleep(0.2)
    raise AssertionError(f"no trial after the first was killed in its first epoch within {timeout} s")


def test_one_trial_at_a_time_with_asha_and_a_failing_trial(cluster_venv, tiny_sweep, tmp_path):
    """A 1-CPU head holds one 1-CPU trial. A later trial's process is SIGKILLed in its first epoch
    (no restarts, no retries: the trial fails); every other trial ends as Ray's ASHA rule says it
    must for the values the trials recorded, one after another (timeline.asha_statuses: which
    trials that stops depends on what they learned, so the check is the rule, not a count)."""
    space = load_space(SPACES / "cluster.yaml")
    slots = concurrent_trials({"CPU": 1}, space.trial_resources(), space.num_samples)
    assert slots == 1
    node = HeadNode(cluster_venv, num_cpus=1)
    try:
        storage = tmp_path / "store"
        job = submit(node, ["--space", str(space.path), "--data", str(shards_of(tiny_sweep)), "--storage", str(storage)])
        sweep_dir = storage / "sweeps" / "cluster"

        target, killed_at = kill_a_trial_in_its_first_epoch(sweep_dir)
        finish(node, job)
        sweep = load_sweep(sweep_dir)
        statuses = sorted(t.status for t in sweep.trials)
        assert statuses.count("error") == 1, statuses
        failed = next(t for t in sweep.trials if t.status == "error")
        assert failed.path == target and failed.history == []  # the kill landed in its first epoch
        assert fileio.read_json(failed.path / sweep_files.STATUS_FILE)["ended_at"] > killed_at

        in_order = sorted(sweep.trials, key=lambda t: fileio.read_json(t.path / sweep_files.STATUS_FILE)["started_at"])
        metric = space.objectives[0].metric
        expected = asha_statuses([[m[metric] for m in t.history] for t in in_order], max_t=space.base_config().epochs,
                                 grace_period=space.scheduler.grace_period,
                                 reduction_factor=space.scheduler.reduction_factor, mode=space.objectives[0].mode)
        assert [t.status for t in in_order] == [{"ended": "error"}.get(e, e) for e in expected], \
            [(t.trial_id, t.status, [m[metric] for m in t.history]) for t in in_order]
        check_sweep_released_everything(node, job, sweep_dir, slots)
    finally:
        node.stop()


def test_the_embedded_default_runs_two_trials_at_once_on_a_2_cpu_node_and_answers(cluster_venv, tmp_path):
    """`jobs/sweep.py` with its defaults (synthetic data ingested by the job, the default space, 6
    trials, ASHA, confirmation runs, the verdict) submitted to `ray start --head --num-cpus 2`: a
    1-CPU trial reserves 1 CPU, so two run side by side, as on `make run`'s own local Ray; no
    trial leaves a placement group reserved, and the verdict answers. With one confirmation seed a
    method instead of the embedded default's 2 (the tiny sweep's confirmations check two seeds)."""
    num_cpus, slots = 2, 2
    node = HeadNode(cluster_venv, num_cpus=num_cpus)
    try:
        # Left out, --storage is the relative `results`: a folder in Ray's copy of the working
        # directory, one a node, which Ray may delete. Refused before any work, saying what to pass.
        refused = submit(node, [])
        logs = node.ray_cli("job", "logs", "--address", node.address, "--follow", refused, timeout=300).stdout
        assert "--storage results: a relative path inside a Ray job" in logs, logs[-3000:]
        status = node.ray_cli("job", "status", "--address", node.address, refused)
        assert f"Job '{refused}' failed" in status.stdout + status.stderr
        storage = tmp_path / "store"
        job = submit(node, ["--storage", str(storage), "--confirm-seeds", "1"])
        log = finish(node, job)
        sweep_dir = storage / "sweeps" / "default"
        assert f"6 trials, up to {slots} at a time" in log
        assert len(load_sweep(sweep_dir).trials) == 6
        assert "Not answerable" not in log and "each arm against ERM" in log and "DANN" in log  # the verdict answers
        check_sweep_released_everything(node, job, sweep_dir, slots=slots)
    finally:
        node.stop()
