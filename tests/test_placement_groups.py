"""A Train run gives back its placement groups (rxsweep.training.placement_groups), on real Ray.

One local Ray with its dashboard for the module: release_orphans asks the State API (which the
dashboard serves) whether a run's controller still lives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from processes import wait_for
from rxsweep.training.placement_groups import (LEDGER_FILE, PlacementGroupLedger, groups_of_dead_actors,
                                               read_ledger, release_orphans)


@pytest.fixture(scope="module")
def ray_dashboard():
    import sys

    import ray
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # its train functions, for the workers
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=3, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def reserved(ray) -> dict[str, dict]:
    return {k: v for k, v in ray.util.placement_group_table().items() if v["state"] == "CREATED"}


def _fail_first_start_callback():
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback

    class FailFirstStart(WorkerGroupCallback):
        """Raises in after_worker_group_start: the worker group's state is built by then."""

        def after_worker_group_start(self, worker_group):
            raise RuntimeError("injected: a callback failed after the worker group started")

    return FailFirstStart()


def _report_once(config):
    import ray.train

    ray.train.report({"x": 1})


def _fit_with_failing_start(tmp_path, extra_callbacks):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(_report_once, scaling_config=ScalingConfig(num_workers=1),
                           run_config=RunConfig(name="run", storage_path=str(tmp_path),
                                                callbacks=[_fail_first_start_callback(), *extra_callbacks]))
    with pytest.raises(Exception, match="injected"):
        trainer.fit()


def test_a_failed_worker_group_start_releases_its_placement_group(ray_dashboard, tmp_path):
    """Ray 2.60 kept the placement group of a worker group whose start failed after its state was
    built; with rxsweep's ledger callback the group is removed (whether or not Ray still leaks it)."""
    ray = ray_dashboard
    before = set(reserved(ray))
    _fit_with_failing_start(tmp_path / "fixed", [PlacementGroupLedger(str(tmp_path / "fixed" / "run"))])
    (entry,) = read_ledger(tmp_path / "fixed" / "run")  # the group it reserved, now given back
    assert ray.util.placement_group_table()[entry["placement_group"]]["state"] == "REMOVED"
    assert set(reserved(ray)) - before == set()


def test_a_run_records_each_placement_group_it_reserves(ray_dashboard, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    run_dir = tmp_path / "run"
    TorchTrainer(_report_once, scaling_config=ScalingConfig(num_workers=1),
                 run_config=RunConfig(name="run", storage_path=str(tmp_path),
                                      callbacks=[PlacementGroupLedger(str(run_dir))])).fit()
    (entry,) = read_ledger(run_dir)
    assert entry["bundles"] == [{"CPU": 1.0}]
    table = ray_dashboard.util.placement_group_table()
    assert table[entry["placement_group"]]["state"] == "REMOVED"  # a finished run gave it back itself
    assert release_orphans(run_dir, ended_at=0, grace_s=0) == ([], False)  # nothing left to release


def test_read_ledger_skips_a_torn_last_line_and_names_any_other_bad_line(tmp_path):
    good = json.dumps({"placement_group": "ab", "bundles": [{"CPU": 1.0}], "controller": "cd", "time": 0})
    (tmp_path / LEDGER_FILE).write_text(good + "\n" + good[:20])
    assert [e["placement_group"] for e in read_ledger(tmp_path)] == ["ab"]
    (tmp_path / LEDGER_FILE).write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(ValueError, match=f"{LEDGER_FILE}:1: not a JSON line"):
        read_ledger(tmp_path)
    assert read_ledger(tmp_path / "never-started") == []


def _holder_cls(ray):
    @ray.remote(num_cpus=0)
    class Holder:
        """Stands for a Train controller: creates a placement group, then dies without removing it."""

        def reserve(self, cpus: float = 1):
            from ray.util.placement_group import placement_group

            pg = placement_group([{"CPU": cpus}])
            ray.get(pg.ready())
            return pg.id.hex(), ray.get_runtime_context().get_actor_id()

    return Holder


def _ledger(run_dir, pg_id, controller):
    run_dir.mkdir(parents=True, exist_ok=True)
    entry = {"placement_group": pg_id, "bundles": [{"CPU": 1.0}], "controller": controller, "time": 0}
    (run_dir / LEDGER_FILE).write_text(json.dumps(entry) + "\n" + '{"placement_gro')  # a torn last line


def test_release_orphans_removes_the_group_of_a_dead_controller_and_waits_for_a_live_one(ray_dashboard, tmp_path):
    ray = ray_dashboard
    gcs = ray.get_runtime_context().gcs_address
    holder = _holder_cls(ray).remote()
    pg_id, controller = ray.get(holder.reserve.remote())
    _ledger(tmp_path / "run", pg_id, controller)
    assert len(read_ledger(tmp_path / "run")) == 1

    # controller alive, within the grace period: left alone, and the caller is told to look again
    assert release_orphans(tmp_path / "run", time.time(), grace_s=600, gcs_address=gcs) == ([], True)
    assert ray.util.placement_group_table()[pg_id]["state"] == "CREATED"

    ray.kill(holder)  # an ungraceful death: the group outlives its creator (it lives as long as the job)
    wait_until_dead(controller)
    assert ray.util.placement_group_table()[pg_id]["state"] == "CREATED"
    released, waiting = release_orphans(tmp_path / "run", time.time(), grace_s=600, gcs_address=gcs)
    assert [(r.placement_group, r.why) for r in released] == [(pg_id, "controller dead")] and not waiting
    assert ray.util.placement_group_table()[pg_id]["state"] == "REMOVED"


def test_release_orphans_removes_a_group_still_held_after_the_grace_period(ray_dashboard, tmp_path):
    ray = ray_dashboard
    holder = _holder_cls(ray).remote()
    pg_id, controller = ray.get(holder.reserve.remote())
    _ledger(tmp_path / "run", pg_id, controller)
    released, waiting = release_orphans(tmp_path / "run", ended_at=0, grace_s=30)  # ended long ago
    assert [(r.placement_group, r.why) for r in released] == [(pg_id, "grace period over")] and not waiting
    assert ray.util.placement_group_table()[pg_id]["state"] == "REMOVED"
    ray.kill(holder)


def _report_then_wait(config):
    from pathlib import Path

    import ray.train

    Path(config["started"]).touch()  # the worker group has started: Ray's cleaner knows its group
    ray.train.report({"x": 1})
    time.sleep(600)


def wait_until_dead(actor_id: str, timeout: float = 60) -> None:
    """Until the GCS says the actor is DEAD (its process gone). Asks the GCS this process is
    connected to: the State API would have to pick one of the machine's Rays."""
    import ray

    wait_for(lambda: ray._private.state.actors(actor_id).get("State") == "DEAD", timeout,
             f"the death of actor {actor_id}")


def group_state_once_settled(ray, pg: str, timeout: float = 60) -> str:
    """The group's state once it is REMOVED, or after `timeout` s (Ray's cleaner looks every second)."""
    deadline = time.monotonic() + timeout
    while (state := ray.util.placement_group_table()[pg]["state"]) != "REMOVED" and time.monotonic() < deadline:
        time.sleep(0.2)
    return state


@pytest.fixture(scope="module")
def second_ray():
    """Another Ray on this machine (`ray start --head` under its own temp folder)."""
    import sys

    from processes import HeadNode

    other = HeadNode(Path(sys.executable).parent, num_cpus=1)
    yield other
    other.stop()


def stop_a_trial(ray, run_dir: Path) -> str:
    """End a trial driver the way Tune ends a stopped trial (its Train controller dies with it)
    once its worker group has started; return that group's placement group."""
    @ray.remote(num_cpus=0)
    class TrialDriver:
        def fit(self, run_dir):
            from ray.train import RunConfig, ScalingConfig
            from ray.train.torch import TorchTrainer

            TorchTrainer(_report_then_wait, scaling_config=ScalingConfig(num_workers=1),
                         train_loop_config={"started": str(Path(run_dir) / "started")},
                         run_config=RunConfig(name="run", storage_path=str(Path(run_dir).parent),
                                              callbacks=[PlacementGroupLedger(run_dir)])).fit()

    driver = TrialDriver.remote()
    driver.fit.remote(str(run_dir))
    wait_for(lambda: (run_dir / "started").exists(), 120, "the worker group's start")
    (entry,) = read_ledger(run_dir)
    ray.kill(driver)
    return entry["placement_group"]


def test_with_two_rays_the_guards_release_orphans_frees_a_stopped_trials_group(ray_dashboard, second_ray, tmp_path):
    """A plain local Ray (ray.init) while a second Ray runs here: Ray Train's cleaner cannot tell
    which Ray to ask about the controller (Ray 2.60 left the group reserved); release_orphans, given
    this Ray's address, as the sweep's guard calls it, leaves it removed either way."""
    ray = ray_dashboard
    pg = stop_a_trial(ray, tmp_path / "run")
    wait_until_dead((read_ledger(tmp_path / "run")[0])["controller"])
    released, waiting = release_orphans(tmp_path / "run", 0.0, grace_s=600,
                                        gcs_address=ray.get_runtime_context().gcs_address)
    assert not waiting and [r.placement_group for r in released] in ([pg], [])  # [] when Ray's cleaner did it
    assert ray.util.placement_group_table()[pg]["state"] == "REMOVED"


def test_with_two_rays_rxsweeps_local_ray_lets_ray_trains_cleaner_remove_the_group(second_ray, tmp_path):
    """rxsweep's own local Ray (rxsweep.cluster.init_ray) tells its processes where its State API
    is: Ray Train's cleaner then removes a stopped trial's group itself, second Ray or not."""
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import ray; from ray import cloudpickle; "
        "import test_placement_groups as t; cloudpickle.register_pickle_by_value(t); "
        "from rxsweep.cluster import init_ray; init_ray(3); "
        "print(t.group_state_once_settled(ray, t.stop_a_trial(ray, t.Path(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "REMOVED", done.stdout[-2000:]


def test_the_sweep_guard_releases_an_ended_trials_leftover_group_and_says_so(ray_dashboard, tmp_path, capsys):
    from types import SimpleNamespace

    from rxsweep import fileio
    from rxsweep.tuning import sweep_files
    from rxsweep.tuning.guard import PlacementGroupGuard

    ray = ray_dashboard
    holder = _holder_cls(ray).remote()
    pg_id, controller = ray.get(holder.reserve.remote())
    trial = SimpleNamespace(trial_id="t0001")  # the guard reads only the id of Tune's Trial
    _ledger(sweep_files.trial_dir(tmp_path, trial.trial_id), pg_id, controller)
    fileio.write_json(sweep_files.trial_dir(tmp_path, trial.trial_id) / sweep_files.STATUS_FILE, {"status": "stopped"})

    guard = PlacementGroupGuard(str(tmp_path), settle_s=0.0, grace_s=600)
    guard.on_trial_complete(0, [], trial)
    guard.on_step_begin(0, [])  # controller alive: nothing removed yet
    assert ray.util.placement_group_table()[pg_id]["state"] == "CREATED"
    ray.kill(holder)
    guard.on_experiment_end([])
    assert ray.util.placement_group_table()[pg_id]["state"] == "REMOVED"
    status = fileio.read_json(sweep_files.trial_dir(tmp_path, trial.trial_id) / sweep_files.STATUS_FILE)
    assert status["status"] == "stopped"
    assert status["released_placement_groups"] == [{"placement_group": pg_id, "bundles": [{"CPU": 1.0}],
                                                    "why": "controller dead"}]
    assert f"trial t0001 had ended, but placement group {pg_id}" in capsys.readouterr().err


def test_the_sweep_guard_removes_a_dead_controllers_group_that_no_ledger_names(ray_dashboard, tmp_path, capsys):
    """Seen in CI: a controller killed 0.3 s after it asked for a new worker group, before it wrote
    the ledger line, and the GCS never marked the group's creator dead. The guard finds such a group
    in the GCS table by its dead creator; a live actor's group and the driver's own are left."""
    from types import SimpleNamespace

    from ray.util.placement_group import placement_group, remove_placement_group

    from rxsweep import fileio
    from rxsweep.tuning import sweep_files
    from rxsweep.tuning.guard import PlacementGroupGuard

    ray = ray_dashboard
    dying, living = _holder_cls(ray).remote(), _holder_cls(ray).remote()
    recorded, controller = ray.get(dying.reserve.remote(0.5))
    unrecorded, _ = ray.get(dying.reserve.remote(0.5))
    lives, _ = ray.get(living.reserve.remote(0.5))
    drivers = placement_group([{"CPU": 0.5}])  # as Tune's trial groups: created by the job's driver
    ray.get(drivers.ready())
    trial = SimpleNamespace(trial_id="t0002")
    _ledger(sweep_files.trial_dir(tmp_path, trial.trial_id), recorded, controller)
    fileio.write_json(sweep_files.trial_dir(tmp_path, trial.trial_id) / sweep_files.STATUS_FILE, {"status": "stopped"})
    job = ray.get_runtime_context().get_job_id()
    assert {r.placement_group for r in groups_of_dead_actors(job)} & {recorded, unrecorded, lives} == set()

    ray.kill(dying)  # the GCS marks the actor DEAD once its process is gone
    wait_for(lambda: {r.placement_group for r in groups_of_dead_actors(job)} >= {recorded, unrecorded}, 60,
             "the killed actor's groups in the list of dead actors' groups")
    PlacementGroupGuard(str(tmp_path), settle_s=0.0, grace_s=600).on_experiment_end([])
    table = ray.util.placement_group_table()
    assert [table[pg]["state"] for pg in (recorded, unrecorded, lives, drivers.id.hex())] == [
        "REMOVED", "REMOVED", "CREATED", "CREATED"]
    status = fileio.read_json(sweep_files.trial_dir(tmp_path, trial.trial_id) / sweep_files.STATUS_FILE)
    assert sorted(r["placement_group"] for r in status["released_placement_groups"]) == sorted([recorded, unrecorded])
    assert f"placement group {unrecorded}" in capsys.readouterr().err
    ray.kill(living)
    remove_placement_group(drivers)
