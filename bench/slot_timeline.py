"""When a sweep's trials held their slots, read off the sweep folder (status.json and each trial's
placement-group ledger): how busy a sweep keeps its max_concurrent_trials.

Idle slot time is a timing, so it is measured here and reported by bench/sweep_overhead.py, never
asserted by a test (a loaded machine stretches it: 24 s measured on a quiet 2-core machine, more
under load; a leaked placement group makes the next worker group wait 60 s). The tests check what
does not depend on timing: that trials ran side by side (tests/timeline.py) and that no trial left
a group for the guard to remove."""

from __future__ import annotations

from pathlib import Path

from rxsweep import fileio
from rxsweep.training.placement_groups import read_ledger
from rxsweep.tuning import sweep_files


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


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals that overlap at any instant (an end and a start at the same time do not)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, change in events:
        now += change
        most = max(most, now)
    return most
