"""Shared fixtures, and the test tiers.

Tiers, by what a test needs (markers declared in pyproject.toml):
  ray      a local Ray instance (ingest, streams, Train runs)
  sweep    a sweep, run here or the session's tiny_sweep fixture
  cluster  Ray nodes started with `ray start`, jobs submitted with `ray job submit`
  calibration  no Ray, but minutes: draws many test sets from a generator to measure an
           interval's width and coverage (tests/test_intervals.py)
A test with none of these is in the fast tier (`make test-fast`). A test's needs are read off the
fixtures it uses (their whole closure, so a fixture that starts Ray marks every test using it);
modules whose tests start Ray themselves declare `pytestmark`. In a run of the fast tier alone,
`ray.init` fails and says which marker to add, so the fast tier stays fast by construction.

Every test gets a timeout by its tier (pytest-timeout, setup and teardown included): a hang fails
that test with its traceback instead of ending the whole run. `@pytest.mark.timeout(N)` on a test
overrides it.

One local Ray instance per test module: starting Ray costs ~6 s."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/rxrx1_files.py

#: Fixtures that give a test a need, by the marker of that need.
NEEDS_BY_FIXTURE = {
    "ray": ("ray_local", "ray_session", "ray_dashboard", "small_store_ray"),
    "sweep": ("tiny_sweep",),
    "cluster": ("head_node", "cluster_venv", "second_ray"),
}
#: Seconds a test may take in each tier, setup included. Sized at about 3x the slowest test of the
#: tier on this 2-core machine (docs/internals/tests.md); the first test to use tiny_sweep pays its setup.
TIMEOUT_S = {"fast": 120, "calibration": 600, "ray": 600, "sweep": 1800, "cluster": 1800}
RAY_TIERS = ("cluster", "sweep", "ray")
TIERS = (*RAY_TIERS, "calibration")  # a test's tier is its most demanding need


def pytest_collection_modifyitems(config, items):
    for item in items:
        for need, fixtures in NEEDS_BY_FIXTURE.items():
            if item.get_closest_marker(need) is None and set(fixtures) & set(item.fixturenames):
                item.add_marker(need)
        tier = next((t for t in TIERS if item.get_closest_marker(t) is not None), "fast")
        item.add_marker(pytest.mark.timeout(TIMEOUT_S[tier]))  # after a test's own: that one wins


def pytest_collection_finish(session):
    """A run of the fast tier alone (no selected test needs Ray) refuses every Ray start: a test or
    fixture that starts one fails and names the marker to add."""
    if any(item.get_closest_marker(t) is not None for item in session.items for t in RAY_TIERS):
        return
    import ray

    def refuse(*args, **kwargs):
        raise RuntimeError("a test of the fast tier starts Ray: mark it `@pytest.mark.ray` (or use the "
                           "ray_local fixture)")

    ray.init = refuse


@pytest.fixture(scope="module")
def ray_local():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # Logical CPUs above the 2 real cores: Ray Data reads and a Train worker can then overlap
    # instead of deadlocking on a CPU count; the work itself is tiny.
    ray.init(num_cpus=int(os.environ.get("RXSWEEP_TEST_CPUS", "4")), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


REPO = Path(__file__).resolve().parents[1]
TINY_SPACE = REPO / "tests" / "spaces" / "tiny.yaml"


JOB_LOG = "job-output.txt"  # what jobs/sweep.py printed (stderr, stdout), next to sweeps/


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """A real sweep, run once per session as a user runs it (`python jobs/sweep.py`, its own local
    Ray, in a subprocess): 4 trials (ERM, DANN-plate, DANN-experiment, ERM with adaptive resampling) on the tiny synthetic set.
    Returns the sweep folder; analysis tests read it, none writes into it."""
    import subprocess

    storage = tmp_path_factory.mktemp("sweep-storage")
    done = subprocess.run([sys.executable, str(REPO / "jobs" / "sweep.py"), "--space", str(TINY_SPACE),
                           "--storage", str(storage)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    (storage / JOB_LOG).write_text(done.stderr + done.stdout)
    sweep_dir = Path(done.stdout.strip().splitlines()[-1])
    assert sweep_dir.is_dir(), done.stdout[-3000:]
    return sweep_dir
