"""The search-space model: what a study searches and how a trial draws from it (no file reading).

A :class:`SearchSpace` holds the objectives, the scheduler, the resources and failure policy, the
fixed TrainConfig values and the searched :class:`Param` list, in sampling order. It turns sampled
values into a trial's TrainConfig (:meth:`SearchSpace.trial_config`) and is itself the Optuna
define-by-run function (:meth:`SearchSpace.sample`).

Every hyperparameter is declared once, in ``rxsweep.training.config`` (default, natural domain,
legal range and the conditions under which it matters: λ settings only with a domain head,
momentum only with SGD). A space narrows or widens a domain within the legal range and may add
conditions (``when``); a parameter is sampled only when its declared and its own conditions hold
and the parameters it depends on were sampled. Spaces are read from YAML and checked by
:func:`rxsweep.tuning.space_yaml.load_space`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rxsweep import yamlio
from rxsweep.training.config import TrainConfig, field_specs
from rxsweep.tuning.objectives import Objective

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "int")
SCHEDULERS = ("asha", "fifo")
#: resources: key -> the TrainConfig field it sets (driver_cpus is the trial driver's own share).
RESOURCE_FIELDS = {"workers": "num_workers", "cpus_per_worker": "cpus_per_worker",
                   "gpus_per_worker": "gpus_per_worker"}
#: A multi-worker trial's share on top of its workers' CPUs: its driver only waits on its
#: TorchTrainer. A single-worker trial trains in its own process and reserves its worker's
#: resources only, so an N-CPU node runs N 1-CPU trials (materialized, its splits are read by the
#: sweep driver before any trial starts: no Ray Data task of its own needs a CPU beside it).
DEFAULT_DRIVER_CPUS = 0.1
DEFAULT_CONFIRM_SEEDS = 3  # WILDS asks for 3 seeds a method


class SpaceError(ValueError):
    """A search space that cannot be run; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # one of DISTRIBUTIONS
    values: tuple = ()  # choice
    low: float | None = None  # uniform, loguniform, int
    high: float | None = None
    log: bool = False  # int on a log scale
    when: tuple[tuple[str, tuple], ...] = ()  # the space's own conditions, and'ed with the declared ones

    def suggest(self, trial) -> Any:
        """Draw this parameter from an Optuna trial."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.kind == "loguniform")


@dataclass(frozen=True)
class Scheduler:
    kind: str = "asha"
    grace_period: int = 1  # epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # ASHA keeps the best 1/reduction_factor at each rung


@dataclass(frozen=True)
class Failures:
    worker_restarts: int = 1  # Ray Train: restart the worker group from the last checkpoint
    trial_retries: int = 1  # Ray Tune: rerun a trial whose driver crashed (resumes its checkpoint)


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    name: str
    description: str
    objectives: tuple[Objective, ...]
    num_samples: int
    seed: int
    scheduler: Scheduler
    driver_cpus: float
    failures: Failures
    fixed: dict  # TrainConfig fields set for every trial (resources included)
    params: tuple[Param, ...]  # in sampling order: every parameter after those it depends on
    start_with: tuple[dict, ...] = ()  # values of the first trials (Optuna enqueues them)
    confirm_seeds: int = DEFAULT_CONFIRM_SEEDS  # seeds of each method's confirmation runs (0: none)
    text: str = field(repr=False, default="")  # the file as read

    @property
    def values(self) -> dict:
        """The file's values as read (comments and layout gone): what a resumed sweep compares."""
        return yamlio.safe_load(self.text) or {}

    @property
    def sha256(self) -> str:
        """The hash of the file's values: a resume accepts a file whose comments or layout changed."""
        return hashlib.sha256(json.dumps(self.values, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def text_sha256(self) -> str:
        """The hash of the file's text, what sweep.json recorded before rxsweep compared values."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def base_config(self) -> TrainConfig:
        """The config every trial starts from: defaults + fixed values (resources included)."""
        return TrainConfig.from_dict(self.fixed)

    def trial_config(self, sampled: dict) -> TrainConfig:
        """The full config of a trial from its sampled parameters."""
        return TrainConfig.from_dict({**self.fixed, **sampled})

    def sample(self, trial) -> dict:
        """Define-by-run: draw the parameters whose conditions hold, in dependency order. This bound
        method is what OptunaSearch calls (and pickles with its state: no closures here)."""
        values = self.base_config().to_dict()
        sampled: dict[str, Any] = {}
        for p in self.params:
            if self.is_active(p, values, sampled):
                values[p.name] = sampled[p.name] = p.suggest(trial)
        return sampled

    def trial_resources(self) -> dict[str, float]:
        """What one trial reserves: its one worker's resources when it trains in its own process,
        else its driver's share plus every worker's."""
        cfg = self.base_config()
        driver = 0.0 if cfg.num_workers == 1 else self.driver_cpus
        cpus = driver + cfg.num_workers * cfg.cpus_per_worker
        return {"CPU": cpus, "GPU": cfg.num_workers * cfg.gpus_per_worker}

    def is_active(self, p: Param, values: dict, sampled: dict) -> bool:
        """Whether a trial with these ``values`` (config) and ``sampled`` parameters draws ``p``."""
        names = {q.name for q in self.params}
        for parent, allowed in (*declared_conditions(p.name), *p.when):
            if parent in names and parent not in sampled:
                return False  # depends on a parameter this trial did not draw
            if parent not in names and not _used(parent, values):
                return False
            if values[parent] not in allowed:
                return False
        return True


def declared_conditions(name: str) -> tuple[tuple[str, tuple], ...]:
    """The conditions TrainConfig declares for a field: (parent, allowed values) pairs."""
    return field_specs()[name][1].when


def _used(name: str, values: dict) -> bool:
    """Whether a field's value matters under `values`, following declared conditions up."""
    return all(values[parent] in allowed and _used(parent, values)
               for parent, allowed in declared_conditions(name))
