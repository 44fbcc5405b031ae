"""Real processes for the sweep tests: sweep drivers to kill, and a `ray start --head` cluster whose
Python can import Ray, torch and the rest but not rxsweep (as on cluster nodes where it is not
installed). Every Ray started here lives under its own short RAY_TMPDIR, so a test stops exactly
its own processes, never another Ray on the machine.
"""

from __future__ import annotations

import json
import os
import signal
import site
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from rxsweep.cluster import free_ports
from rxsweep.tuning import sweep_files

REPO = Path(__file__).resolve().parents[1]
SWEEP_JOB = REPO / "jobs" / "sweep.py"


def ray_tmpdir() -> str:
    """A short private folder for Ray's sessions (Unix socket paths must stay under 107 bytes)."""
    return tempfile.mkdtemp(prefix="rx", dir="/tmp")


def stop_ray_under(tmpdir: str) -> None:
    """Kill every process whose command line names `tmpdir`, with all their children."""
    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(tmpdir in part for part in proc.info["cmdline"] or []):
                victims += [proc, *proc.children(recursive=True)]
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    for proc in victims:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


def start_sweep(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """`python jobs/sweep.py ARGS` in its own session (so the test can kill the whole tree)."""
    handle = open(log, "w")
    return subprocess.Popen([sys.executable, str(SWEEP_JOB), *args], stdout=handle, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a process started by start_sweep and everything it started: a crash, not a shutdown."""
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `condition()` until it returns something truthy; fail with `what` (and the log tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = log.read_text()[-4000:] if log and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


def venv_without_rxsweep(folder: Path) -> Path:
    """A venv whose Python sees this venv's packages (Ray, torch...) but not rxsweep: its .pth adds
    our site-packages as a plain path, so the editable rxsweep install (itself a .pth there) is
    not processed. Returns its bin folder."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    packages = subprocess.run([str(folder / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    Path(packages, "deps.pth").write_text(site.getsitepackages()[0] + "\n")
    return folder / "bin"


def ray_start(bin_dir: Path, args: list[str], env: dict, cwd: str, undo) -> None:
    """`ray start ARGS` with the Python in `bin_dir`; on failure `undo()` (kill what it started)
    and fail with its output."""
    started = subprocess.run([str(bin_dir / "python"), "-m", "ray.scripts.scripts", "start", *args,
                              "--disable-usage-stats"], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)
    if started.returncode != 0:
        undo()
        raise AssertionError(f"ray start {args[0]} failed:\n{started.stdout[-3000:]}\n{started.stderr[-3000:]}")


class HeadNode:
    """`ray start --head` on 127.0.0.1 ports of its own, token authentication as Ray sets it."""

    def __init__(self, bin_dir: Path, num_cpus: int = 3, env: dict | None = None) -> None:
        """``env``: more environment for the node's processes (its job drivers and trials)."""
        self.tmpdir, self.bin_dir = ray_tmpdir(), bin_dir
        names = ("port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
                 "runtime-env-agent-port", "ray-client-server-port")
        self.dashboard_port, *component_ports = free_ports(1 + len(names))
        self.gcs_port = component_ports[0]
        self.env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "RAY_TMPDIR": self.tmpdir, **(env or {})}
        self.env.pop("RAY_ADDRESS", None)
        # Every listening port its own: the job agent's default port (52365) is shared by every Ray
        # on the machine, and a head node whose agent lost it answers `ray job submit` with "No
        # available agent to submit job" for good (seen with a second Ray running here).
        # (picked together: one at a time, the kernel once gave two of them the same port)
        ports = [f"--{name}={port}" for name, port in zip(names, component_ports)]
        ray_start(bin_dir, ["--head", *ports, f"--dashboard-port={self.dashboard_port}", f"--num-cpus={num_cpus}"],
                  self.env, self.tmpdir, undo=self.stop)

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def add_node(self, num_cpus: int, env: dict | None = None) -> "WorkerNode":
        """A second node on this machine: `ray start --address` with its own CPUs and ports
        (``env``: what differs in its processes' environment from the head's)."""
        return WorkerNode(self, num_cpus, env)

    def client_env(self) -> dict:
        """What a `ray job` client needs on 2.60: the token mode (the token is in ~/.ray/auth_token)."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        return {**env, "RAY_AUTH_MODE": "token"}

    def ray_cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        ray = str(Path(sys.executable).with_name("ray"))
        return subprocess.run([ray, *args], capture_output=True, text=True, env=self.client_env(),
                              timeout=timeout, cwd=REPO)

    def actors(self) -> list[dict]:
        listed = self.ray_cli("list", "actors", "--address", self.address, "--limit", "10000",
                              "--format", "json", timeout=120)
        assert listed.returncode == 0, listed.stderr[-2000:]
        return json.loads(listed.stdout)

    def stop(self) -> None:
        stop_ray_under(self.tmpdir)


def shards_of(sweep_dir: Path) -> Path:
    """The shard folder a sweep ran on (sweep.json)."""
    return Path(json.loads((sweep_dir / sweep_files.SWEEP_FILE).read_text())["data"])


#: What a process that trains shows in its command line: a Ray Train worker, or the process of a
#: Tune trial (a single-worker sweep trial trains in it: rxsweep.tuning.trial).
TRAIN_WORKER, TRIAL_PROCESS = "RayTrainWorker", "ray::ImplicitFunc"


def train_workers_under(tmpdir: str, kind: str = TRAIN_WORKER) -> list[psutil.Process]:
    """The processes of `kind` of the Ray living under `tmpdir`."""
    workers = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(kind in part for part in proc.info["cmdline"] or []) and \
                    any(tmpdir in " ".join(p.cmdline()) for p in proc.parents()):
                workers.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return workers


class WorkerNode:
    """`ray start --address HEAD` on this machine: a node of the head's cluster with resources,
    listening ports and a temp folder of its own, as a node on another machine has (sharing the
    head's session folder, its runtime-env agent unpacked a job's working_dir over the one the
    job's driver was importing from). Its raylet is told apart by its node-manager port."""

    def __init__(self, head: HeadNode, num_cpus: int, env: dict | None = None) -> None:
        names = ("node-manager-port", "object-manager-port", "dashboard-agent-listen-port",
                 "dashboard-agent-grpc-port", "metrics-export-port", "runtime-env-agent-port")
        ports = free_ports(len(names))
        self.node_manager_port, self.tmpdir = ports[0], ray_tmpdir()
        ray_start(head.bin_dir, [f"--address=127.0.0.1:{head.gcs_port}", *[f"--{name}={port}" for name, port in
                                 zip(names, ports)], f"--num-cpus={num_cpus}", f"--temp-dir={self.tmpdir}"],
                  {**head.env, "RAY_AUTH_MODE": "token", **(env or {})}, head.tmpdir, undo=self.stop)

    def raylet(self) -> psutil.Process:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0].endswith("raylet") and \
                    f"--node_manager_port={self.node_manager_port}" in cmdline:
                return proc
        raise AssertionError(f"no raylet with node manager port {self.node_manager_port}")

    def stop(self) -> None:
        stop_ray_under(self.tmpdir)
