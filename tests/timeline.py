"""What a sweep folder says about how its trials ran, for the sweep and cluster tests: how many
ran side by side, which groups the guard had to release, and what ASHA should have decided. None
of it depends on timing; idle slot time does, and is measured by bench/sweep_overhead.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from rxsweep import fileio
from rxsweep.training.placement_groups import read_ledger
from rxsweep.tuning import sweep_files

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from slot_timeline import busy_intervals, longest_idle_slot, most_at_once  # noqa: E402,F401


def first_groups_the_guard_released(sweep_dir: Path) -> list[str]:
    """Trials whose first worker group the sweep driver's guard had to remove (Ray and rxsweep
    should release those themselves). The guard may have had to remove a group that a controller
    started again while Tune was ending its trial (its workers died with it; Ray's cleaner never
    learns of such a group): that is what the guard is for, and is not listed."""
    trials = []
    for trial in sorted((sweep_dir / sweep_files.TRIALS_DIR).iterdir()):
        status = fileio.read_json(trial / sweep_files.STATUS_FILE) or {}
        ledger = read_ledger(trial)
        released = {r["placement_group"] for r in status.get("released_placement_groups", [])}
        if ledger and ledger[0]["placement_group"] in released:
            trials.append(trial.name)
    return trials


def asha_statuses(histories: list[list[float]], max_t: int, grace_period: int, reduction_factor: float,
                  mode: str = "max") -> list[str]:
    """What Ray's ASHA (one bracket, ray.tune.schedulers.async_hyperband) decides for trials that
    ran one after another, each given by its metric per epoch, in the order the trials started:
    "completed" (reached max_t), "stopped" (below a rung's cutoff: the (1 - 1/rf) percentile of the
    values earlier trials recorded at that rung) or "ended" (its history ended before either: a
    trial that failed). Rungs are at grace_period * rf**k below max_t; a trial is recorded at the
    highest rung it reached that does not hold it yet."""
    n_rungs = int(np.log(max_t / grace_period) / np.log(reduction_factor) + 1)
    rungs = [(grace_period * reduction_factor ** k, {}) for k in reversed(range(n_rungs))]
    sign = 1 if mode == "max" else -1
    statuses = []
    for trial, history in enumerate(histories):
        status = "ended"
        for epoch, value in enumerate(history, start=1):
            if epoch >= max_t:
                status = "completed"
                break
            rung = next((r for m, r in rungs if epoch >= m and trial not in r), None)
            if rung is None:
                continue
            cutoff = np.nanpercentile(list(rung.values()), (1 - 1 / reduction_factor) * 100) if rung else None
            rung[trial] = sign * value
            if cutoff is not None and sign * value < cutoff:
                status = "stopped"
                break
        statuses.append(status)
    return statuses
