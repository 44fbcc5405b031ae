"""The Ray that rxsweep starts keeps Ray's token authentication on and its dashboard on 127.0.0.1:
a `ray job submit` without the cluster's token, or with another one, is refused; with it, accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

RAY = str(Path(sys.executable).with_name("ray"))
SERVE = """
import sys, time
import ray
from rxsweep.cluster import init_ray
init_ray(num_cpus=1)
print(ray._private.worker._global_node.address_info["webui_url"], flush=True)
sys.stdin.read()  # until the test closes it
"""


@pytest.fixture(scope="module")
def dashboard():
    server = subprocess.Popen([sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        yield server.stdout.readline().strip()
    finally:
        server.stdin.close()
        server.wait(timeout=120)


def submit(address: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS")}
    return subprocess.run([RAY, "job", "submit", "--address", f"http://{address}", "--", "echo", "hello"],
                          capture_output=True, text=True, timeout=180, env={**clean, **env, "HOME": str(home)})


def test_a_job_without_the_token_is_refused_and_one_with_it_runs(dashboard, tmp_path):
    assert dashboard.startswith("127.0.0.1:")
    stranger = submit(dashboard, tmp_path)  # no token, and no ~/.ray/auth_token in its home
    assert stranger.returncode != 0 and "Unauthorized: Missing authentication token" in stranger.stderr
    wrong = submit(dashboard, tmp_path, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="0" * 32)
    assert wrong.returncode != 0 and "Forbidden" in wrong.stderr + wrong.stdout, wrong.stderr[-2000:]
    owner = submit(dashboard, Path.home(), RAY_AUTH_MODE="token")  # the token the local Ray wrote
    assert owner.returncode == 0 and "hello" in owner.stdout, owner.stderr[-2000:]
