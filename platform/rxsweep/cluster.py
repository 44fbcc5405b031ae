"""Connecting to Ray: one place that decides between a cluster and a local Ray.

With RAY_ADDRESS set (as under `ray job submit`, or pointed at a cluster by hand) rxsweep joins
that cluster; otherwise it starts a local Ray on this machine, sized by the caller, with its
dashboard on 127.0.0.1 only. The dashboard is not optional: it serves the state API that Ray
Train's placement-group cleaner asks whether a run's controller is alive, so without it the CPUs
of a trial stopped early (ASHA) are never given back. Ray's token authentication stays as Ray
sets it (on, for local clusters of 2.59+).

When rxsweep runs from a source checkout that is not installed (jobs/sweep.py sets
RXSWEEP_SHIP_PACKAGE=1 after putting platform/ on sys.path, as in a job submitted with
--working-dir .), the package is shipped to every Ray worker as a `py_modules` runtime env, so
cluster nodes need Ray, torch and the other dependencies, but not rxsweep.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIP_PACKAGE_ENV = "RXSWEEP_SHIP_PACKAGE"


def init_ray(num_cpus: int | None = None, log_to_driver: bool = False) -> None:
    """Join the cluster in RAY_ADDRESS, or start a local Ray with `num_cpus` logical CPUs."""
    import ray

    if ray.is_initialized():
        return
    kwargs = {"log_to_driver": log_to_driver}
    if os.environ.get(SHIP_PACKAGE_ENV) == "1":
        kwargs["runtime_env"] = {"py_modules": [str(Path(__file__).resolve().parent)]}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        # address="local": always a new instance. Without it ray.init() joins any cluster that
        # `ray start` left on this machine (or waits minutes on a stale record of a dead one).
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 **kwargs)
