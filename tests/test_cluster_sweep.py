"""A sweep submitted with `ray job submit` to a `ray start --head` cluster with just enough CPUs
for one trial at a time (and for two): it finishes, keeps its trial slots busy, and leaves no
placement group of its job reserved, with ASHA stopping trials early and with a trial that fails.

Why these tests exist: Ray Train V2 under Tune leaked a worker group's placement group (see
rxsweep.training.placement_groups); on a cluster with room for one trial the next trial then
waited for resources forever. A leak shows here three ways: the job does not finish, a trial slot
stays idle while trials wait (a worker group waiting 60 s for its placement group), or a group
of the job is still reserved after its trial ended (the sweep driver's guard had to remove it).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from processes import TRIAL_PROCESS, HeadNode, shards_of, train_workers_under, venv_without_rxsweep
from rxsweep import fileio
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.training import run_files
from rxsweep.training.run_files import read_history
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space_yaml import load_space
from rxsweep.tuning.sweep import concurrent_trials
from test_sweep import SPACES
from timeline import MAX_IDLE_SLOT_S, busy_intervals, first_groups_the_guard_released, longest_idle_slot

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def cluster_venv(tmp_path_factory) -> Path:
    return venv_without_rxsweep(tmp_path_factory.mktemp("cluster-venv") / "venv")


def submit(node: HeadNode, args: list[str], agent_timeout: float = 120) -> str:
    """`ray job submit --no-wait`; its submission id. A head node just started may answer "No
    available agent to submit job, please try again later" while its job agent starts (seen on
    this loaded 2-core machine): like a user, try again."""
    deadline = time.monotonic() + agent_timeout
    while True:
        submitted = node.ray_cli("job", "submit", "--address", node.address, "--working-dir", ".", "--no-wait",
                                 "--", "python", "jobs/sweep.py", *args)
        if "No available agent" not in submitted.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
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


def test_longest_idle_slot_is_computed_from_the_timeline():
    # two slots; the third trial starts 30 s after the first slot frees up
    assert longest_idle_slot([(0, 10), (0, 50), (40, 60)], slots=2) == 30
    assert longest_idle_slot([(0, 10), (0, 50), (11, 60)], slots=2) == 1
    assert longest_idle_slot([(0, 10), (12, 20)], slots=1) == 2
    assert longest_idle_slot([(0, 10), (0, 20)], slots=2) == 0  # nothing waits: idle slots are fine


def check_sweep_released_everything(node: HeadNode, submission_id: str, sweep_dir: Path, log: str,
                                    slots: int) -> None:
    sweep = load_sweep(sweep_dir)
    assert sweep.finished and not sweep.lost
    assert all(t.status in ("completed", "stopped", "error") for t in sweep.trials)
    assert first_groups_the_guard_released(sweep_dir) == []
    assert reserved_groups_of_job(node, submission_id) == []
    idle = longest_idle_slot(busy_intervals(sweep_dir), slots)
    assert idle < MAX_IDLE_SLOT_S, (idle, busy_intervals(sweep_dir))


def kill_a_trial_in_its_first_epoch(node: HeadNode, sweep_dir: Path, timeout: float = 600) -> tuple[Path, float]:
    """SIGKILL the process of a trial after the first (a single-worker trial trains in its own
    process) before it reports an epoch; return the trial's folder and when it was killed. One
    trial runs at a time here, so the trial processes that appear after the first trial ended
    belong to the trial that has claimed its folder and reported nothing yet."""
    first_trials: set[int] = set()
    target, killed_at = None, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        folders = list((sweep_dir / sweep_files.TRIALS_DIR).glob("*")) if sweep_dir.exists() else []
        ended = {f for f in folders if (fileio.read_json(f / sweep_files.STATUS_FILE) or {}).get("ended_at")}
        processes = train_workers_under(node.tmpdir, TRIAL_PROCESS)
        if not ended:
            first_trials.update(p.pid for p in processes)
        elif target is not None:
            if target in ended:
                return target, killed_at
        else:
            starting = [f for f in folders if f not in ended and (f / run_files.CONFIG_FILE).exists()
                        and not read_history(f / run_files.METRICS_FILE)]
            fresh = [p for p in processes if p.pid not in first_trials]
            if len(starting) == 1 and fresh:
                target, killed_at = starting[0], time.time()
                for process in fresh:
                    process.kill()
        time.sleep(0.2)
    raise AssertionError(f"no trial after the first was killed in its first epoch within {timeout} s")


def test_one_trial_at_a_time_with_asha_and_a_failing_trial(cluster_venv, tiny_sweep, tmp_path):
    """2 CPUs hold one 1.1-CPU trial. A later trial's process is SIGKILLed in its first epoch (no
    restarts, no retries: the trial fails); ASHA stops some of the others. Every trial still gets
    the CPU."""
    space = SPACES / "cluster.yaml"
    slots = concurrent_trials({"CPU": 2}, load_space(space).trial_resources(), load_space(space).num_samples)
    assert slots == 1
    node = HeadNode(cluster_venv, num_cpus=2)
    try:
        storage = tmp_path / "store"
        job = submit(node, ["--space", str(space), "--data", str(shards_of(tiny_sweep)), "--storage", str(storage)])
        sweep_dir = storage / "sweeps" / "cluster"

        target, killed_at = kill_a_trial_in_its_first_epoch(node, sweep_dir)
        log = finish(node, job)
        sweep = load_sweep(sweep_dir)
        statuses = sorted(t.status for t in sweep.trials)
        assert statuses.count("error") == 1, statuses
        assert "stopped" in statuses, statuses  # ASHA ended a trial early
        failed = next(t for t in sweep.trials if t.status == "error")
        assert failed.path == target
        assert fileio.read_json(failed.path / sweep_files.STATUS_FILE)["ended_at"] > killed_at
        check_sweep_released_everything(node, job, sweep_dir, log, slots)
    finally:
        node.stop()


def test_the_embedded_default_on_one_slot(cluster_venv, tmp_path):
    """`jobs/sweep.py` with its defaults (synthetic data ingested by the job, the default space, 6
    trials, ASHA) on a cluster with CPUs for exactly one 1.1-CPU trial at a time, where a leaked
    placement group used to hang the job: the slot stays busy until the last trial starts.
    Without the confirmation runs (`--confirm-seeds 0`): on one slot they alone took ~14 of 29
    minutes in CI. test_sweep's run of the embedded default (its own local Ray, two slots) checks
    two slots kept busy, the confirmation runs and the verdict; a two-slot run here as well took
    9 more minutes of CI and checked nothing that one does not."""
    num_cpus, slots = 2, 1
    node = HeadNode(cluster_venv, num_cpus=num_cpus)
    try:
        storage = tmp_path / "store"
        job = submit(node, ["--storage", str(storage), "--confirm-seeds", "0"])
        log = finish(node, job)
        sweep_dir = storage / "sweeps" / "default"
        assert f"6 trials, up to {slots} at a time" in log
        sweep = load_sweep(sweep_dir)
        assert len(sweep.trials) == 6 and "stopped" in {t.status for t in sweep.trials}
        check_sweep_released_everything(node, job, sweep_dir, log, slots=slots)
    finally:
        node.stop()
