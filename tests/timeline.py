"""When a sweep's trials held their slots, read off the sweep folder (status.json and each trial's
placement-group ledger): the check that a sweep keeps its max_concurrent_trials busy."""

from __future__ import annotations

from pathlib import Path

from rxsweep import fileio
from rxsweep.training.placement_groups import read_ledger
from rxsweep.tuning import sweep_files

#: Longest a trial slot may stay idle while trials wait: Tune starting the next trial's driver,
#: the driver starting its Train run, the worker process starting, on a loaded 2-core machine
#: (measured here: up to 24 s). A leaked placement group makes the next worker group wait 60 s.
MAX_IDLE_SLOT_S = 45.0


def busy_intervals(sweep_dir: Path) -> list[tuple[float, float]]:
    """Per trial, when it held a trial slot doing work: from its first worker group's start (the
    ledger; Tune's start when it never got one) to its end, both written by the sweep."""
    intervals = []
    for trial in sorted((sweep_dir / sweep_files.TRIALS_DIR).iterdir()):
        status = fileio.read_json(trial / sweep_files.STATUS_FILE)
        ledger = read_ledger(trial)
        start = ledger[0]["time"] if ledger else status["started_at"]
        intervals.append((start, status["ended_at"]))
    return intervals


def longest_idle_slot(intervals: list[tuple[float, float]], slots: int) -> float:
    """Longest stretch during which fewer than `slots` trials were busy although a trial was still
    waiting to start (computed on the union of start and end times)."""
    times = sorted({t for interval in intervals for t in interval})
    longest = current = 0.0
    for a, b in zip(times, times[1:]):
        busy = sum(s <= a < e for s, e in intervals)
        waiting = sum(s > a for s, _ in intervals)
        if waiting and busy < slots:
            current += b - a
            longest = max(longest, current)
        else:
            current = 0.0
    return longest


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
