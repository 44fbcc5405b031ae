"""The Optuna searcher a sweep uses: seeded TPE for parallel trials, a study file on disk.

TPE with ``multivariate`` (models parameters jointly), ``group`` (handles conditional parameters:
the λ settings exist only for DANN trials) and ``constant_liar`` (running trials count as bad
results, so concurrent trials do not all sample the same region). The study lives in
``SWEEP_DIR/optuna.db`` so ``optuna-dashboard`` can open it during and after the sweep.
"""

from __future__ import annotations

import math
from pathlib import Path

from ray.tune.search.optuna import OptunaSearch

from rxsweep.tuning.space import SearchSpace


class SweepOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna what happened to every trial.

    Ray's OptunaSearch tells a trial COMPLETE with whatever its last result holds: an errored
    trial with a partial result would count as a finished one, and so would a trial the scheduler
    stopped early (every epoch reports both objectives, so its epoch-4 values would stand in the
    study as if they were final). Here errors are FAIL; a trial that did not report its last epoch
    (``epochs``, as TrialStatusWriter judges `completed`), or whose objectives are missing or NaN,
    is PRUNED.
    """

    def __init__(self, *args, epochs: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.epochs = epochs

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if (error or not result or result.get("epoch") != self.epochs
                or any(not _finite(result.get(m)) for m in metrics)):
            result = None  # OptunaSearch: no values + error -> FAIL, no values -> PRUNED
        super().on_trial_complete(trial_id, result=result, error=error)


def _has_trials(storage, study_name: str) -> bool:
    """Whether the study ``study_name`` exists in ``storage`` with any trial (waiting ones too)."""
    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:  # no such study yet
        return False
    return bool(storage.get_all_trials(study_id, deepcopy=False))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def make_searcher(space: SearchSpace, study_file: Path | None) -> SweepOptunaSearch:
    import optuna

    sampler = optuna.samplers.TPESampler(seed=space.seed, multivariate=True, group=True,
                                         constant_liar=True)
    storage, points = None, [dict(p) for p in space.start_with] or None
    if study_file is not None:
        storage = optuna.storages.RDBStorage(f"sqlite:///{study_file}")
        if _has_trials(storage, space.name):
            # A resumed driver's study holds the start_with rows already (asked, or still waiting):
            # enqueued again, each resume would re-run them all (a driver killed 16 times had
            # left 26 waiting in bench/chaos.py), since Optuna asks waiting trials first.
            points = None
    metrics = [o.metric for o in space.objectives]
    modes = [o.mode for o in space.objectives]
    return SweepOptunaSearch(space=space.sample, sampler=sampler, storage=storage, study_name=space.name,
                             points_to_evaluate=points,
                             metric=metrics if len(metrics) > 1 else metrics[0],
                             mode=modes if len(modes) > 1 else modes[0], epochs=space.base_config().epochs)
