"""A Tune callback (runs in the sweep driver) that keeps each trial's status.json current.

Tune's own state is for Tune; status.json is for people and for `rxsweep rank`, which reads a
running or finished sweep without Ray. A trial is `completed` when it reported its last
epoch (the scheduler may end it right then: that is no early stop), `stopped` when the scheduler
ended it before, `error` with the message. ``started_at`` and ``ended_at`` (seconds since the
epoch) say when Tune started the trial and when it ended, so a sweep's use of its concurrency can
be read off the disk.
"""

from __future__ import annotations

import os
import time

from ray.tune import Callback

from rxsweep import fileio
from rxsweep.tuning import sweep_files

#: Fields of status.json that later events keep: when the trial first started (a retry starts it
#: again) and what the placement-group guard released (rxsweep.tuning.guard).
KEPT = ("started_at", "released_placement_groups")


class TrialStatusWriter(Callback):
    def __init__(self, sweep_dir: str | os.PathLike, epochs: int) -> None:
        self.sweep_dir = sweep_dir
        self.epochs = epochs

    def _write(self, trial, status: str, **extra) -> None:
        path = sweep_files.trial_dir(self.sweep_dir, trial.trial_id) / sweep_files.STATUS_FILE
        kept = {k: v for k, v in (fileio.read_json(path) or {}).items() if k in KEPT}
        result = trial.last_result or {}
        if status == "running":
            kept.setdefault("started_at", time.time())
        fileio.write_json(path, {
            **kept, "trial_id": trial.trial_id, "status": status, "params": trial.config,
            "last_epoch": result.get("epoch"), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **extra,
        })

    def on_trial_start(self, iteration, trials, trial, **info):
        self._write(trial, "running")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._write(trial, "running")

    def on_trial_complete(self, iteration, trials, trial, **info):
        done = (trial.last_result or {}).get("epoch") == self.epochs
        self._write(trial, "completed" if done else "stopped", ended_at=time.time())

    def on_trial_error(self, iteration, trials, trial, **info):
        self._write(trial, "error", error=error_line(trial), error_file=trial.error_file, ended_at=time.time())


def error_line(trial) -> str:
    """The last line of a failed trial's error (the exception and its message)."""
    error = trial.get_error() or _read(trial.error_file) or "unknown error"
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(error)


def _read(path: str | None) -> str | None:
    """The driver's own copy of a trial's error file. Trial.get_error reads the copy at the storage
    location, which a trial failing on its first attempt has not been synced to yet when Tune calls
    on_trial_error (it came back empty, and the status said "unknown error")."""
    try:
        return open(path, encoding="utf-8").read() if path else None
    except OSError:
        return None
