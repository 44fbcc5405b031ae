"""Connecting to Ray: one place that decides between a cluster and a local Ray.

With RAY_ADDRESS set (as under `ray job submit`, or pointed at a cluster by hand) rxsweep joins
that cluster; otherwise it starts a local Ray on this machine with its dashboard on 127.0.0.1
only, on Ray's usual port 8265 when that is free and on another free port when it is not (either
way the address is printed on stderr as the Ray starts: `rxsweep: Ray dashboard on http://...`),
with as many logical CPUs as the machine has cores (see local_cpus) whichever command starts
it: in the default job an ingest starts it and the sweep then runs in it, so it must hold as many
trials as the sweep expects. The dashboard is not optional: it serves the state API that Ray
Train's placement-group cleaner asks whether a run's controller is alive, so without it the CPUs
of a trial stopped early (ASHA) are never given back; and every process of a local Ray is told
where that API is (_start_local), so a second Ray on the machine cannot confuse it. Ray's token
authentication stays as Ray sets it (on, for local clusters of 2.59+).

When rxsweep runs from a source checkout that is not installed (jobs/sweep.py sets
RXSWEEP_SHIP_PACKAGE=1 after putting platform/ on sys.path, as in a job submitted with
--working-dir .), the package is shipped to every Ray worker as a `py_modules` runtime env, so
cluster nodes need Ray, torch and the other dependencies, but not rxsweep.
"""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

SHIP_PACKAGE_ENV = "RXSWEEP_SHIP_PACKAGE"
#: Where Ray's State API clients look first for the dashboard (see _start_local).
API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
#: How long Ray Tune waits for a stopped trial's thread before it reuses its process for the next
#: trial (Ray's default: 2 s; a reset that times out stalls Ray 2.60's sweep, see tuning/sweep.py).
#: Set in every process of the job (a job-level runtime env), cluster or local.
THREAD_TIMEOUT_ENV, TRIAL_THREAD_TIMEOUT_S = "TUNE_FUNCTION_THREAD_TIMEOUT_S", "60"
#: Where a local Ray's dashboard goes when the port is free: Ray's default, the one every Ray
#: tutorial, `ray start --head` and `ray job submit --address http://127.0.0.1:8265` use.
DASHBOARD_PORT = 8265


#: Set by Ray's job supervisor in the environment of a submitted job's entrypoint (`ray job submit`).
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def in_ray_job() -> bool:
    """Whether this process is a job's entrypoint started by `ray job submit` (or one of its children)."""
    return JOB_ENV in os.environ


def local_cpus(at_least: float = 0) -> int:
    """Logical CPUs of a local Ray: the machine's cores (two 1-CPU trials side by side on 2 cores,
    as on a cluster node started with `ray start --num-cpus 2`); more when one trial alone asks for
    more, so that it can run at all."""
    return max(os.cpu_count() or 1, math.ceil(at_least))


def init_ray(num_cpus: float | None = None, log_to_driver: bool = False) -> None:
    """Join the cluster in RAY_ADDRESS, or start a local Ray with local_cpus(num_cpus) logical CPUs."""
    import ray

    if ray.is_initialized():
        return
    runtime_env = {"env_vars": {THREAD_TIMEOUT_ENV: os.environ.get(THREAD_TIMEOUT_ENV, TRIAL_THREAD_TIMEOUT_S)}}
    if os.environ.get(SHIP_PACKAGE_ENV) == "1":
        runtime_env["py_modules"] = [str(Path(__file__).resolve().parent)]
    kwargs = {"log_to_driver": log_to_driver, "runtime_env": runtime_env}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        _start_local(local_cpus(num_cpus or 0), kwargs)


def _start_local(cpus: int, kwargs: dict) -> None:
    """A new local Ray whose every process knows its own State API, its dashboard on
    127.0.0.1:DASHBOARD_PORT when that port is free, else on another free port; says where.

    Ray Train's placement-group cleaner (a Ray worker) asks the State API whether a run's
    controller still lives, and finds that API by listing the machine's GCS processes: with a
    second Ray on the machine it cannot tell which one is its own, gives up, and the placement
    group of a trial Tune stopped early stays reserved. RAY_API_SERVER_ADDRESS, which that lookup
    reads first, is set to this Ray's dashboard before the Ray starts, so every process it starts
    inherits it: the port is chosen here, not by Ray (given no port, Ray tries 8265 and the next
    ones, too late for that variable). A port taken between the look and the start (Ray refuses an
    occupied port before it starts anything), or a dashboard that did not get the chosen port,
    would point them at the wrong Ray: that start is undone and tried again on another port."""
    import ray

    chosen = os.environ.get(API_SERVER_ENV)
    for attempt in range(3):
        port = DASHBOARD_PORT if attempt == 0 and port_is_free(DASHBOARD_PORT) else free_port()
        if chosen is None:  # only while Ray starts its processes: they keep it, this one does not
            os.environ[API_SERVER_ENV] = f"http://127.0.0.1:{port}"
        try:
            # address="local": always a new instance. Without it ray.init() joins any cluster that
            # `ray start` left on this machine (or waits minutes on a stale record of a dead one).
            context = ray.init(address="local", num_cpus=cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                               dashboard_port=port, **kwargs)
        except ValueError:
            if port_is_free(port):  # not Ray's "already occupied": not a race this loop can win
                raise
            continue
        finally:
            if chosen is None:
                os.environ.pop(API_SERVER_ENV, None)
        if chosen is not None or (context.dashboard_url or "").endswith(f":{port}"):
            _say_dashboard(context.dashboard_url)
            return
        ray.shutdown()
    raise RuntimeError(f"the local Ray's dashboard did not get a free port three times; set {API_SERVER_ENV} "
                       "to the dashboard's address, or start Ray with `ray start --head`")


def _say_dashboard(url: str) -> None:
    """The first line a local Ray adds to a command's output (stderr): where its dashboard is, why
    not on DASHBOARD_PORT when it is not, and how to sign in when token authentication is on."""
    address = url if "://" in url else f"http://{url}"
    notes = ["this machine only"]
    if not url.endswith(f":{DASHBOARD_PORT}"):
        notes.insert(0, f"{DASHBOARD_PORT} was in use")
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":  # ray.init sets it when it turns token auth on
        notes.append("it asks for the token `ray get-auth-token` prints")
    line = f"rxsweep: Ray dashboard on {address} ({'; '.join(notes)})"
    from rxsweep.console import say  # the terminal, also while a sweep's driver log holds stdout and stderr

    say(line)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``port`` on ``host`` can be bound now, tested as Ray tests a dashboard port
    (SO_REUSEADDR: a port left in TIME_WAIT counts as free, as it does for Ray)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` different TCP ports on 127.0.0.1 that nothing listens on right now (all held open
    while they are picked: one at a time, the kernel can hand out the same port twice, which a
    test's `ray start` then refused)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
