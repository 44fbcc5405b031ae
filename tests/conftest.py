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
