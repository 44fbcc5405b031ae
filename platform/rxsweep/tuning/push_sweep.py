"""A Tune callback of a sweep driver that stages a URI (rxsweep.tuning.sweep_storage): its records
(status.json, optuna.db, ...) reach the URI as trials start and end, and every PUSH_EVERY_S while
they report, so a sweep whose driver was lost with its node resumes from the URI elsewhere."""

from __future__ import annotations

import time

from ray.tune import Callback

from rxsweep.tuning.sweep_storage import SweepStorage

#: Seconds between two pushes while trials report (a push lists the staging folder and copies
#: what changed: the study and a few status files).
PUSH_EVERY_S = 10.0


class PushSweep(Callback):
    """Tune callback of a sweep driver staging a URI: its records reach the URI as trials start and
    end (and every PUSH_EVERY_S while they report), so a driver lost with its node resumes elsewhere."""

    def __init__(self, storage: SweepStorage, every_s: float = PUSH_EVERY_S) -> None:
        self.storage, self.every_s, self._last = storage, every_s, 0.0

    def _push(self) -> None:
        self._last = time.monotonic()
        self.storage.push()

    def on_trial_start(self, iteration, trials, trial, **info):
        self._push()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._push()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._push()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if time.monotonic() - self._last > self.every_s:
            self._push()

    def on_experiment_end(self, trials, **info):
        self._push()
