"""A Ray Tune callback, in the sweep driver, that says each trial's events on the terminal:
started (with its parameters), each epoch's held-out validation accuracy and mixing, completed,
stopped early by the scheduler, failed (rxsweep.tuning.progress says them, and counts the phase's trials).

Tune pickles its callbacks with the Tuner, and a resumed sweep gets those back: the callback holds
no console, it asks rxsweep.tuning.progress for the current one (none: it says nothing).
"""

from __future__ import annotations

import math

from ray.tune import Callback

from rxsweep.tuning.confirm import RUN_KEY
from rxsweep.tuning.progress import LABEL_KEYS, current, method_label
from rxsweep.tuning.status import error_line


class TrialProgress(Callback):
    """Says each trial's events through the current SweepProgress (module doc). ``base``: the
    space's base config (TrainConfig.to_dict()), for the method of a trial whose sampled
    parameters leave it out; ``epochs``: the last epoch, which a trial that completed reached."""

    def __init__(self, base: dict, epochs: int) -> None:
        self.base = base
        self.epochs = epochs
        self._started: set[str] = set()

    def on_trial_start(self, iteration, trials, trial, **info):
        again = trial.trial_id in self._started
        self._started.add(trial.trial_id)
        params = "  ".join(f"{k} {_value(v)}" for k, v in self._params(trial).items() if k not in LABEL_KEYS)
        self._say(trial, "restarted: resumes from its last checkpoint" if again else f"started  {params}".rstrip())

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._say(trial, f"failed, retried: {error_line(trial)}")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._say(trial, f"epoch {result.get('epoch', '?')}/{self.epochs}{_scores(result)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        last = trial.last_result or {}
        epoch = last.get("epoch")
        outcome = "completed" if epoch == self.epochs else "stopped"
        told = "completed" if outcome == "completed" else f"stopped early at epoch {epoch}/{self.epochs}"
        self._say(trial, told + _scores(last), outcome)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say(trial, f"failed (its status.json and the log hold the whole error): {error_line(trial)}", "failed")

    def _params(self, trial) -> dict:
        config = trial.config or {}
        return dict(config.get(RUN_KEY) or config)

    def _say(self, trial, text: str, outcome: str | None = None) -> None:
        progress = current()
        if progress is None:
            return
        params = self._params(trial)
        label = method_label({**self.base, **params})
        if RUN_KEY in (trial.config or {}) and "seed" in params:
            label += f" seed {params['seed']}"
        counted = progress.count(outcome) if outcome else ""
        # counted first: a line cut at the console's width keeps it
        progress.say(f"  trial {trial.trial_id}  {label:<23} " + (f"{counted} " if counted else "") + text, crop=True)


def _scores(result: dict) -> str:
    told = ""
    for key, name in (("heldout_val_acc", "held-out val acc"), ("mixing", "mixing")):
        value = result.get(key)
        if isinstance(value, (int, float)) and not math.isnan(value):
            told += f", {name} {value:.3f}"
    return told


def _value(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
