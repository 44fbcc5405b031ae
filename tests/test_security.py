"""The Ray that rxsweep starts keeps Ray's token authentication on and its dashboard on 127.0.0.1:
a `ray job submit` without the cluster's token, or with another one, is refused; with it, accepted.
Its dashboard is on 127.0.0.1:8265 when that port is free, elsewhere when it is not, and the
address it prints is the one that answers."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
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


# What init_ray prints on stderr when it starts a local Ray (rxsweep.cluster._say_dashboard); the
# child then prints its session's name on stdout and waits until the test closes its stdin.
PRINTED = re.compile(r"^rxsweep: Ray dashboard on (http://\S+) \((.*)\)$")
SESSION = """
import sys
import ray
from rxsweep.cluster import init_ray
init_ray(num_cpus=1)
print(ray._private.worker._global_node.session_name, flush=True)
sys.stdin.read()
"""


def start_and_read_address() -> tuple[subprocess.Popen, str, str, str]:
    """A local Ray started by init_ray in a child process: (the child, the printed address, the
    printed note, the Ray's session name)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}  # a local Ray
    child = subprocess.Popen([sys.executable, "-c", SESSION], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    seen = []
    for line in child.stderr:  # until the dashboard line (Ray's own warnings come before it)
        seen.append(line)
        if match := PRINTED.match(line.strip()):
            return child, match[1], match[2], child.stdout.readline().strip()
    child.wait(timeout=60)
    raise AssertionError("init_ray printed no dashboard address:\n" + "".join(seen)[-3000:])


def stop(child: subprocess.Popen) -> None:
    child.stdin.close()
    child.wait(timeout=120)


def get(url: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def local_token() -> str:
    """The token the local Ray uses: RAY_AUTH_TOKEN, else the file it wrote (~/.ray/auth_token)."""
    return os.environ.get("RAY_AUTH_TOKEN") or (Path.home() / ".ray" / "auth_token").read_text().strip()


def assert_is_that_rays_dashboard(address: str, session: str) -> None:
    """The address answers with the token, is that Ray's (its session), and refuses without it."""
    status, body = get(f"{address}/api/version", local_token())
    assert status == 200, (status, body[:500])
    assert json.loads(body)["session_name"] == session, body[:500]
    assert get(f"{address}/api/version", None)[0] == 401  # token authentication still on


def test_with_8265_taken_the_dashboard_is_elsewhere_and_the_printed_address_answers():
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past a TIME_WAIT a test's Ray left
    try:
        holder.bind(("127.0.0.1", 8265))
        holder.listen()
    except OSError:  # something on the machine holds it already: the case under test all the same
        holder.close()
    try:
        child, address, note, session = start_and_read_address()
    finally:
        holder.close()
    try:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", address) and not address.endswith(":8265"), address
        assert "8265 was in use" in note, note
        assert_is_that_rays_dashboard(address, session)
    finally:
        stop(child)


def test_with_8265_free_the_dashboard_is_on_8265():
    from rxsweep.cluster import port_is_free

    if not port_is_free(8265):
        pytest.skip("something on this machine listens on 127.0.0.1:8265 already")
    child, address, note, session = start_and_read_address()
    try:
        assert address == "http://127.0.0.1:8265", (address, note)
        assert "was in use" not in note, note
        assert_is_that_rays_dashboard(address, session)
    finally:
        stop(child)


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
