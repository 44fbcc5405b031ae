"""What a Ray Train run reserves, and giving it back: the placement-group ledger of a run folder.

Why rxsweep needs this (Ray 2.60, Train V2). A Train run's worker group lives in a placement group
created by the run's TrainController actor. A placement group that a non-detached actor creates
is removed when its creator dies *and its job ends*, not before; under Tune, every trial's
controller is a child of the trial's driver and all of them belong to the sweep's one job. So a
placement group outlives its trial unless someone removes it:

1. Ray Train removes it when the controller shuts down gracefully (the run finished or failed).
2. Ray Train's detached PlacementGroupCleaner removes it when the controller dies ungracefully,
   as it does each time Tune ends a trial whose Train run is still going (ASHA stopping it, an
   errored or retried driver). The cleaner only knows a placement group once the worker group
   has started (ray-project/ray#62753 is one race around that), and it asks the State API whether
   the controller lives: with two Ray instances on one machine it cannot tell which to ask, its
   monitor thread dies, and nothing is removed.
3. A worker group whose start fails *after* its placement group was reserved and its state built
   (an ``after_worker_group_start`` callback raising, a worker dying before the train function
   is launched) is never shut down: ``WorkerGroup._start`` cleans up only a group that has not
   "started", and the controller never keeps a reference to the failed group. Its placement group
   stays reserved while the controller retries with a new one; on a cluster with room for one
   trial the retry can never be placed, and the sweep hangs (each retry times out after 60 s).

What this module does about it, at the two places rxsweep owns:

- :class:`PlacementGroupLedger`, a Ray Train callback that every rxsweep run carries: in the
  controller's process it makes a failed worker-group start shut its group down (3), and it
  appends every placement group the run reserves, the moment it is created, with the controller's
  actor id, to ``RUN_DIR/placement_groups.jsonl``.
- :func:`release_orphans` reads that ledger and removes every placement group still reserved
  whose controller is dead (or, once ``grace_s`` has passed, any still reserved). The sweep
  driver calls it after each trial ends (rxsweep.tuning.guard), so neither (2) nor a Ray bug
  not yet known can hold a cluster's CPUs or GPUs after their trial is over.
- :func:`groups_of_dead_actors` lists, job-wide, every group whose creator actor is dead,
  also one a ledger could not record (below); the sweep driver removes those it still finds a
  few seconds later.

Also seen (Ray 2.60, cluster tests): a controller whose trial Tune is ending sees its workers die
with it and restarts its worker group; Ray's cleaner never learns of the new group. Mostly the
ledger records it and the sweep driver removes it. But once (CI, `ray job submit` on 3 CPUs) the
controller was killed 0.3 s after it asked the GCS for the new group, before the ledger line was
written, and the GCS, which had already been told the controller was dying, never marked the
group's creator dead: nothing would ever have removed it. So the sweep driver also looks at the
whole GCS table (:func:`groups_of_dead_actors`): a group of the sweep's job whose creator actor is
dead is removed, ledger or not.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ray.train.v2._internal.execution.callback import ControllerCallback
from ray.train.v2._internal.execution.worker_group import WorkerGroup

from rxsweep import fileio
from rxsweep.training.run_files import LEDGER_FILE

#: States of a placement group that still reserve (or wait for) resources.
RESERVING = ("PENDING", "PREPARED", "CREATED", "RESCHEDULING")

logger = logging.getLogger(__name__)


class PlacementGroupLedger(ControllerCallback):
    """Ray Train callback (runs in the run's controller) recording the run's placement groups.

    ``run_dir`` must be a path the controller's node can write and the sweep driver can read (the
    same requirement as a run's metrics.jsonl: a local folder, also when the run's checkpoints go
    to a URI)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.path = Path(run_dir) / LEDGER_FILE
        self.controller_id: str | None = None

    def after_controller_start(self, train_run_context) -> None:
        import ray
        from ray.train.v2._internal.execution.controller.controller import TrainController

        self.controller_id = ray.get_runtime_context().get_actor_id()
        # this controller's process only: every worker group it starts records its placement group
        # the moment it is created, and releases it if its start fails
        ReleasingWorkerGroup.ledger = self
        TrainController.worker_group_cls = ReleasingWorkerGroup

    def record(self, pg) -> None:
        entry = {"placement_group": pg.id.hex(), "bundles": pg.bundle_specs,
                 "controller": self.controller_id, "time": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:  # one short line an append; read_ledger skips a torn last one
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


class ReleasingWorkerGroup(WorkerGroup):
    """A WorkerGroup that records its placement group in the run's ledger as soon as it is created
    (a controller killed while its workers start, e.g. one that restarts its worker group while
    Tune is ending its trial, would otherwise leave a group nobody knows), and releases its workers
    and placement group when its start fails at any step, also after its state was built (Ray
    2.60 leaks them then: see (3) above)."""

    ledger: PlacementGroupLedger | None = None

    def _create_placement_group(self, scaling_config, worker_group_context):
        handle = super()._create_placement_group(scaling_config, worker_group_context)
        if self.ledger is not None:
            self.ledger.record(handle.placement_group)
        return handle

    def _start(self):
        try:
            super()._start()
        except BaseException:
            if self.has_started():
                logger.warning("worker group failed after it had started; releasing its placement group")
                try:
                    self._worker_group_state.shutdown()
                finally:
                    self._clear_state()
            raise


def read_ledger(run_dir: str | Path) -> list[dict]:
    """The run's placement groups, oldest first ([] when it never started a worker group); a torn
    last line (the controller killed mid-append) is skipped, any other bad line is an error."""
    return fileio.read_jsonl(Path(run_dir) / LEDGER_FILE)


@dataclass(frozen=True)
class Released:
    placement_group: str
    bundles: list
    controller: str | None
    why: str  # "controller dead" | "grace period over"


def release_orphans(run_dir: str | Path, ended_at: float, grace_s: float, gcs_address: str | None = None,
                    settle_s: float = 0.0) -> tuple[list[Released], bool]:
    """Remove the run's placement groups that are still reserved although its trial has ended.

    Nothing is judged before ``settle_s`` seconds after ``ended_at`` (time for Ray's own
    cleanup). Then a group is removed when its controller is dead (the State API says DEAD or no
    longer knows it), or, once ``grace_s`` seconds have passed since ``ended_at``, whatever the
    controller's state (a controller whose trial ended and who still holds resources that long is
    stuck). Returns what was removed, and whether the run still holds a group not yet judged (so
    the caller asks again later). Needs ``ray`` initialised.
    """
    import ray

    entries = read_ledger(run_dir)
    if not entries:
        return [], False
    table = ray.util.placement_group_table()
    held = [e for e in entries if table.get(e["placement_group"], {}).get("state") in RESERVING]
    since = time.time() - ended_at
    if not held or since < settle_s:
        return [], bool(held)
    released, waiting = [], False
    for entry in held:
        alive = _actor_alive(entry.get("controller"), gcs_address)
        if alive and since < grace_s:
            waiting = True
            continue
        remove_group(entry["placement_group"])
        released.append(Released(entry["placement_group"], entry.get("bundles", []), entry.get("controller"),
                                 "grace period over" if alive else "controller dead"))
    return released, waiting


def groups_of_dead_actors(job_id: str) -> list[Released]:
    """Every placement group still reserved (not detached) that an actor of job ``job_id`` created
    and that actor is dead (``controller`` is the dead actor).

    A live actor's group is never listed, nor one the job's driver created (Tune's trial groups:
    the GCS names no creator actor for those). A dead actor's group serves no one: its workers
    were its children and died with it. Reads the GCS tables (no dashboard needed); needs ``ray``
    initialised in a process of that job's cluster."""
    import ray
    from ray.core.generated import gcs_pb2

    gcs = ray._private.state.state._connect_and_get_accessor()
    nil_actor = ray.ActorID.nil().hex()
    found = []
    for raw in gcs.get_placement_group_table():
        pg = gcs_pb2.PlacementGroupTableData.FromString(raw)
        creator = pg.creator_actor_id.hex()
        state = gcs_pb2.PlacementGroupTableData.PlacementGroupState.Name(pg.state)
        if (pg.creator_job_id.hex() != job_id or pg.is_detached or creator == nil_actor
                or state not in RESERVING):
            continue
        # creator_actor_dead alone misses the group a dying actor asked for (see the module's doc)
        if pg.creator_actor_dead or ray._private.state.actors(creator).get("State") == "DEAD":
            found.append(Released(pg.placement_group_id.hex(), [dict(b.unit_resources) for b in pg.bundles],
                                  creator, "controller dead"))
    return found


def remove_group(placement_group: str) -> None:
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(placement_group)))


def _actor_alive(actor_id: str | None, gcs_address: str | None) -> bool:
    """Whether the actor lives, by the State API; True when that cannot be told (the caller then
    waits for its grace period instead of removing a group that may still be in use)."""
    if not actor_id:
        return False
    try:
        from ray.util.state import get_actor

        state = get_actor(actor_id, address=gcs_address, timeout=10)
    except Exception as exc:  # dashboard down or unreachable: judge by the grace period alone
        logger.debug("could not ask the State API about actor %s: %s", actor_id, exc)
        return True
    return state is not None and state.state != "DEAD"
