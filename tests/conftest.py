"""Shared fixtures. One local Ray instance per test module: starting Ray costs ~6 s."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/rxrx1_files.py


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
