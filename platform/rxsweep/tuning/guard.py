"""A Tune callback (runs in the sweep driver) that makes sure an ended trial holds no resources.

After a trial ends (completed, stopped by the scheduler, errored, or about to be retried) its
Train run's placement groups must be gone before the next trial needs them; Ray Train removes
them itself on a graceful end, and its PlacementGroupCleaner after an ungraceful one. This guard
checks, ``settle_s`` seconds after the end (time for Ray's own cleaner), every placement group
that the trial's run recorded in its ledger (rxsweep.training.placement_groups): one still
reserved by a dead controller, or still reserved ``grace_s`` after the end, is removed, and the
sweep says so (trial id, placement group, resources) on stderr and in the trial's status.json
under ``released_placement_groups``. Every ``SCAN_S`` seconds, and when the sweep ends, it also
looks at every group of the sweep's job: one whose creator actor is dead, ledger or not (a
controller killed between asking for a group and recording it), is removed once it has been seen
so for ``settle_s`` (Ray's cleaner goes first). So a Ray bug can slow a sweep down, never
stall it silently.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from ray.tune import Callback

from rxsweep import fileio
from rxsweep.training.placement_groups import groups_of_dead_actors, read_ledger, release_orphans, remove_group
from rxsweep.tuning import sweep_files

#: Seconds after a trial's end before the guard looks (Ray's cleaner polls every second).
SETTLE_S = 5.0
#: Seconds after a trial's end after which a group still reserved is removed even if its
#: controller seems alive (or the State API cannot tell).
GRACE_S = 30.0
#: Seconds between two looks at the trials still waiting to be judged.
POLL_S = 1.0
#: Seconds between two looks at the whole job for groups of dead actors.
SCAN_S = 5.0


class PlacementGroupGuard(Callback):
    def __init__(self, sweep_dir: str | os.PathLike, settle_s: float = SETTLE_S, grace_s: float = GRACE_S) -> None:
        self.sweep_dir = sweep_dir
        self.settle_s, self.grace_s = settle_s, grace_s
        self._ended: dict[str, float | None] = {}  # trial id -> when it ended (None: restarted since)
        self._last_look = self._last_scan = 0.0
        self._dead_since: dict[str, float] = {}  # placement group -> when first seen with its creator dead
        self._gcs_address: str | None = None

    # Tune's events ------------------------------------------------------------------------
    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = time.time()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = time.time()

    def on_trial_recover(self, iteration, trials, trial, **info):
        self._ended[trial.trial_id] = time.time()  # its old controller must go before the retry runs

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self._ended:  # a retry: only its dead controllers' groups are fair game
            self._ended[trial.trial_id] = None

    def on_step_begin(self, iteration, trials, **info):
        now = time.time()
        if self._ended and now - self._last_look >= POLL_S:
            self._last_look = now
            self._look()
        if now - self._last_scan >= SCAN_S:
            self._last_scan = now
            self._scan()

    def on_experiment_end(self, trials, **info):
        deadline = time.time() + self.settle_s + self.grace_s
        while self._ended and time.time() < deadline:
            self._look()
            if self._ended:
                time.sleep(POLL_S)
        self._look(final=True)
        deadline = time.time() + self.settle_s + POLL_S
        while self._scan() and time.time() < deadline:
            time.sleep(POLL_S)

    # ---------------------------------------------------------------------------------------
    def _look(self, final: bool = False) -> None:
        for trial_id, ended_at in list(self._ended.items()):
            run_dir = sweep_files.trial_dir(self.sweep_dir, trial_id)
            if final:  # the sweep is over: whatever is still reserved is left over
                since, settle, grace = 0.0, 0.0, 0.0
            elif ended_at is None:  # restarted: only its dead controllers' groups are left over
                since, settle, grace = 0.0, 0.0, float("inf")
            else:
                since, settle, grace = ended_at, self.settle_s, self.grace_s
            released, waiting = release_orphans(run_dir, since, grace, self._gcs(), settle_s=settle)
            if released:
                self._report(trial_id, run_dir, released)
            if not waiting:
                del self._ended[trial_id]

    def _scan(self) -> bool:
        """Remove the job's groups whose creator actor has been seen dead for ``settle_s``; each is
        reported under the trial whose ledger names that actor as its controller. Returns whether
        such a group is still waiting for its settle time."""
        import ray

        now = time.time()
        dead = {r.placement_group: r for r in groups_of_dead_actors(ray.get_runtime_context().get_job_id())}
        self._dead_since = {pg: self._dead_since.get(pg, now) for pg in dead}
        for pg, since in list(self._dead_since.items()):
            if now - since < self.settle_s:
                continue
            remove_group(pg)
            del self._dead_since[pg]
            r = dead[pg]
            run_dir = self._run_of(r.controller)
            if run_dir is not None:
                self._report(run_dir.name, run_dir, [r])
            else:  # a controller that died before it recorded anything
                print(f"rxsweep: placement group {pg} {r.bundles} of dead actor {r.controller} was still "
                      "reserved; removed it", file=sys.stderr, flush=True)
        return bool(self._dead_since)

    def _run_of(self, controller: str | None) -> Path | None:
        for run_dir in sorted((Path(self.sweep_dir) / sweep_files.TRIALS_DIR).glob("*")):
            if any(e.get("controller") == controller for e in read_ledger(run_dir)):
                return run_dir
        return None

    def _gcs(self) -> str | None:
        if self._gcs_address is None:
            import ray

            self._gcs_address = ray.get_runtime_context().gcs_address
        return self._gcs_address

    def _report(self, trial_id: str, run_dir, released) -> None:
        for r in released:
            print(f"rxsweep: trial {trial_id} had ended, but placement group {r.placement_group} "
                  f"{r.bundles} was still reserved ({r.why}); removed it", file=sys.stderr, flush=True)
        status = fileio.read_json(run_dir / sweep_files.STATUS_FILE) or {"trial_id": trial_id}
        previous = status.get("released_placement_groups", [])
        fileio.write_json(run_dir / sweep_files.STATUS_FILE, {**status, "released_placement_groups": previous + [
            {"placement_group": r.placement_group, "bundles": r.bundles, "why": r.why} for r in released]})
