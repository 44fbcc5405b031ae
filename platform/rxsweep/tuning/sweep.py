"""Run a sweep: a search space over shards, with Ray Tune + Optuna (+ ASHA), into a sweep folder.

:func:`run_sweep` checks everything it can before Ray starts (the space file, the data, every
choice value against the data), then builds the Tuner, or restores it with ``resume=True``, and
returns the sweep folder (see sweep_files.py). The same call runs on a laptop (a local Ray) and under
``ray job submit`` (it joins that cluster): nothing in the code changes with the cluster size.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rxsweep import __version__, fileio, locations
from rxsweep.mirror import OWN_FILES, STAGING_ENV
from rxsweep.data.splits import held_out_words
from rxsweep.stages import stage
from rxsweep.training.config import ConfigError
from rxsweep.training.plan import RunPlan, open_index, preflight
from rxsweep.tuning import sweep_files
from rxsweep.tuning.progress import ended_trials, phase, say
from rxsweep.tuning.reference_arms import embeddings_arms_once, features_baseline_once
from rxsweep.tuning.space import SearchSpace, SpaceError
from rxsweep.tuning.space_yaml import load_space
from rxsweep.tuning.sweep_storage import SweepStorage
from rxsweep.tuning.tune_errors import fit

#: Seconds between Tune's saves of the experiment state (Ray's default is at least 10 s). A sweep
#: killed between two saves forgets the trials it started in between; they are marked `lost`.
EXPERIMENT_STATE_PERIOD_S = "2"


@dataclass
class SharedInputs:
    """Built once by the sweep driver and handed to every trial (Ray's object store holds one copy):
    the split is a run setting, identical for every trial, and so are the datasets."""
    index: Any  # ShardIndex with the base config's split column
    datasets: tuple  # what rxsweep.training.trainer.build_datasets returns


def check_sweep(space_file: str | Path, data: str | Path, num_samples: int | None = None,
                confirm_seeds: int | None = None) -> tuple[SearchSpace, RunPlan]:
    """Load the space and check it against the data; no Ray. Raises SpaceError / ConfigError."""
    space = load_space(space_file)
    if num_samples is not None:
        if num_samples < 1:
            raise SpaceError(f"--num-samples must be >= 1, got {num_samples}")
        space = dataclasses.replace(space, num_samples=num_samples)
    if confirm_seeds is not None:
        if confirm_seeds < 0:
            raise SpaceError(f"--confirm-seeds must be >= 0, got {confirm_seeds}")
        space = dataclasses.replace(space, confirm_seeds=confirm_seeds)
    index = open_index(data)
    base = space.base_config()
    try:
        plan = preflight(base, data, index=index)
    except ConfigError as e:
        raise ConfigError(f"{space.path}: with the fixed values and defaults: {e}") from None
    for p in space.params:  # every choice must run on this data (e.g. plate_controls needs controls)
        for value in p.values:
            try:
                preflight(space.trial_config({p.name: value}), data, index=index)
            except ConfigError as e:
                raise ConfigError(f"{space.path}: parameters.{p.name}: {value!r}: {e}") from None
    if any(o.metric.startswith("mixing") for o in space.objectives):
        _check_mixing_possible(space, plan)
    return space, plan


def _check_mixing_possible(space: SearchSpace, plan: RunPlan) -> None:
    held = plan.index.table[plan.index.table["split"] == "heldout_val"]
    if (held.groupby("cell_type")["experiment"].nunique() < 2).all():
        raise ConfigError(
            f"{space.path}: objective 'mixing' is scored within cell types over the held-out validation "
            f"experiments, and no cell type has 2 of them ({sorted(held['experiment'].unique())}); set "
            "n_val_per_cell_type: 2 under fixed, or list val_experiments")


def run_sweep(space_file: str | Path, data: str | Path, storage: str | Path = "results", name: str | None = None,
              resume: bool = False, num_samples: int | None = None, max_concurrent: int | None = None,
              echo: bool = True, confirm_seeds: int | None = None, embeddings=None) -> Path:
    """Run (or resume) a sweep and return its folder, STORAGE/NAME (NAME: the space's name): the
    search, then each method's confirmation runs (rxsweep.tuning.confirm). ``data`` and
    ``storage``: paths or URIs (rxsweep.locations); for a URI storage the folder returned is the
    driver's staging copy, pushed (rxsweep.tuning.sweep_storage). ``embeddings``: {NAME: FILE} (or
    NAME=FILE strings) of the user's own embeddings, each a verdict arm (rxsweep.training.embeddings_arm),
    checked against the shards here, before anything trains."""
    from rxsweep.training.embeddings_arm import check_embeddings, parse_embeddings

    space, plan = check_sweep(space_file, data, num_samples, confirm_seeds)
    embeddings = parse_embeddings(embeddings)
    check_embeddings(embeddings, plan.splits)
    data = locations.normalize(data)
    storage = SweepStorage.open(storage, check_name(name or space.name))
    storage.pull()
    sweep_dir = storage.local
    identity = {"space_sha256": space.sha256, "data": data, "num_samples": space.num_samples,
                "confirm_seeds": space.confirm_seeds}
    if locations.is_uri(storage.root):
        # Tune restores its searcher as pickled, and Optuna's study URL in it names the staging
        # folder's optuna.db: a resuming driver must stage where the first one did (the default,
        # ~/.cache/rxsweep/staging, is the same path on every machine of one user).
        identity["staging"] = str(sweep_dir)
    _claim(sweep_dir, identity, resume, space)
    if fileio.remove_stale_tmp(sweep_dir):
        say(echo, f"{sweep_dir}: removed the temporary files of writers killed earlier")
    previous = fileio.read_json(sweep_dir / sweep_files.SWEEP_FILE) or {}
    if resume and previous.get("finished"):
        say(echo, f"{sweep_dir}: this sweep finished already; nothing to resume")
        return sweep_dir
    _write_sweep_file(sweep_dir, space, identity, finished=False)
    storage.push()

    import ray

    from rxsweep.training.trainer import build_datasets
    from rxsweep.tuning.searcher import make_searcher
    from rxsweep.tuning.trial import run_trial

    if not ray.is_initialized():  # (an ingest may have started it)
        with phase("ray", "joining RAY_ADDRESS's cluster" if os.environ.get("RAY_ADDRESS") else "starting a local Ray"):
            _init_ray(space)
    concurrency = max_concurrent or concurrent_trials(ray.cluster_resources(), space.trial_resources(),
                                                      space.num_samples)
    say(echo, f"sweep {space.name}: {space.num_samples} trials, up to {concurrency} at a time, "
              f"each {space.trial_resources()} -> {sweep_dir}")
    with phase("datasets", "the split's datasets and the hand-made-features baseline"):
        shared = SharedInputs(plan.index, build_datasets(space.base_config(), plan))
        features_baseline_once(sweep_dir, data, plan, space.base_config().seed, echo)
        embeddings_arms_once(sweep_dir, data, plan, space.base_config().seed, embeddings, echo)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", EXPERIMENT_STATE_PERIOD_S)
    # A result whose mixing could not be scored (a note instead) lacks the key; Tune would
    # otherwise reject it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    tuner = _tuner(storage, space, data, shared, concurrency, resume, echo, run_trial,
                   search_alg=make_searcher(space, sweep_dir / sweep_files.OPTUNA_DB), scheduler=_scheduler(space),
                   num_samples=space.num_samples)
    with stage("search"), phase("search", f"{space.num_samples} trials on {held_out_words(plan.index.table, 'heldout_val')}",
                                total=space.num_samples, done=ended_trials(sweep_dir) if resume else 0):
        results = fit(tuner, sweep_dir)
        storage.pull()  # the trials' own records, pushed from their nodes
        known = {r.metrics.get("trial_id") for r in results} | {_trial_id_of(r) for r in results}
        mark_lost_trials(sweep_dir, known)
    if space.confirm_seeds:
        with stage("confirmation runs (after the search)"):
            _confirm(storage, space, data, shared, concurrency, resume, echo)
            storage.pull()
    _write_sweep_file(sweep_dir, space, identity, finished=True)
    storage.push()
    return sweep_dir


def _tuner(folder: SweepStorage, space: SearchSpace, data: str, shared: SharedInputs, concurrency: int,
           resume: bool, echo: bool, trainable_fn, search_alg=None, scheduler=None, num_samples: int = 1,
           param_space=None):
    """A Tuner whose trials run ``trainable_fn`` into FOLDER/trials, or the one in FOLDER/tune
    restored (``resume``). One place for the settings every stage of a sweep shares. Trials and
    Tune write at ``folder.location``; the driver's callbacks into ``folder.local``."""
    from ray import tune

    from rxsweep.tuning.guard import PlacementGroupGuard
    from rxsweep.tuning.push_sweep import PushSweep
    from rxsweep.tuning.status import TrialStatusWriter
    from rxsweep.tuning.trial import runs_in_trial_process
    from rxsweep.tuning.trial_progress import TrialProgress

    trainable = tune.with_resources(
        tune.with_parameters(trainable_fn, space=space, shards_dir=data, sweep_dir=folder.location, shared=shared),
        _trial_process_resources(space))
    tune_path = locations.join(folder.location, sweep_files.TUNE_DIR)
    if resume and tune.Tuner.can_restore(tune_path):
        return tune.Tuner.restore(tune_path, trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, param_space=param_space)
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg, scheduler=scheduler,
            # A trial that trains in its own process reuses the process of a finished trial: a
            # new one spent 10-16 s importing torch, Ray Tune and rxsweep before it trained (a
            # sixth of `make run`). Tune hands a reused process the new trial's context
            # (bench/reuse_actors_repro.py: no trial saw another's id, FIFO or ASHA), once the
            # stopped trial's thread has ended; a thread that outlives TUNE_FUNCTION_THREAD_TIMEOUT_S
            # fails the reset, and Ray 2.60 then never starts the next trial (the stall once seen
            # here with TorchTrainer trials, whose teardown is slow): rxsweep.cluster raises that
            # timeout, and multi-worker trials keep a new process each.
            num_samples=num_samples, max_concurrent_trials=concurrency,
            reuse_actors=runs_in_trial_process(space),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=sweep_files.TUNE_DIR, storage_path=folder.location,
            failure_config=tune.FailureConfig(max_failures=_trial_restarts(space)),
            # The callbacks get the SweepStorage itself (an os.PathLike of the driver's folder):
            # Tune pickles them, and a driver resuming on another machine has its own staging.
            callbacks=[TrialStatusWriter(folder, space.base_config().epochs), PlacementGroupGuard(folder),
                       TrialProgress(space.base_config().to_dict(), space.base_config().epochs),
                       *([PushSweep(SweepStorage(folder.root))] if locations.is_uri(folder.root) else [])],
            verbose=1 if echo else 0),
    )


def _trial_process_resources(space: SearchSpace) -> dict:
    """What Tune reserves for a trial's own process: the whole trial when it trains in it (one
    worker), else the small share of a driver that waits on its TorchTrainer's worker group."""
    from rxsweep.tuning.trial import runs_in_trial_process

    if runs_in_trial_process(space):
        return {k.lower(): v for k, v in space.trial_resources().items() if v}
    return {"cpu": space.driver_cpus}


def _trial_restarts(space: SearchSpace) -> int:
    """Tune's retries of a failed trial. A trial that trains in its own process is its only
    worker: its worker restarts are Tune retries too (each resumes the last checkpoint)."""
    from rxsweep.tuning.trial import runs_in_trial_process

    restarts = space.failures.worker_restarts if runs_in_trial_process(space) else 0
    return space.failures.trial_retries + restarts


def _confirm(storage: SweepStorage, space: SearchSpace, data: str, shared: SharedInputs, concurrency: int,
             resume: bool, echo: bool) -> None:
    """Each method's best configuration again with space.confirm_seeds fresh seeds, none a search
    trial's (rxsweep.tuning.confirm). A resumed driver keeps the choice (and the search's seeds) of
    the confirm.json its killed predecessor wrote."""
    from ray import tune

    from rxsweep.tuning.confirm import RUN_KEY, choice_to_confirm, confirm_runs, confirm_seeds, write_confirm_file
    from rxsweep.tuning.trial import run_confirm_trial

    sweep_dir = storage.local
    chosen = choice_to_confirm(sweep_dir, space, resume)
    if not chosen:
        say(echo, "confirm: no completed or stopped trial to confirm")
        return
    write_confirm_file(sweep_dir, chosen, space.confirm_seeds)  # the choice survives a killed driver
    storage.push()
    runs = confirm_runs(chosen, space.confirm_seeds)
    picks = ", ".join(f"{method} (trial {choice['source_trial']})" for method, choice in chosen.items())
    some = next(iter(chosen.values()))
    say(echo, f"confirm: {picks}, {space.confirm_seeds} seed(s) each: {len(runs)} runs to the last epoch, "
              f"seeds {confirm_seeds(some, space.confirm_seeds)} (fresh: the search ran seed(s) "
              f"{some['search_seeds']})")
    if not runs:
        return
    tuner = _tuner(storage.folder(sweep_files.CONFIRM_DIR), space, data, shared, min(concurrency, len(runs)), resume, echo,
                   run_confirm_trial, param_space={RUN_KEY: tune.grid_search([r[RUN_KEY] for r in runs])})
    with phase("confirmation", f"{len(runs)} runs, judged later on {held_out_words(shared.index.table, 'heldout_test')}",
               total=len(runs), unit="runs", done=ended_trials(sweep_dir / sweep_files.CONFIRM_DIR) if resume else 0):
        results = fit(tuner, sweep_dir)
    write_confirm_file(sweep_dir, chosen, space.confirm_seeds, results)


#: A sweep name is one path component: it names a folder under STORAGE and never leaves it.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def check_name(name: str) -> str:
    """``name`` if it can name a sweep folder; a ValueError saying what is allowed otherwise."""
    if not NAME_PATTERN.fullmatch(name or ""):
        raise ValueError(f"sweep name {name!r} must be one folder name: letters, digits, '-', '_' and '.', "
                         "not starting with '.' or '-' (e.g. --name dann-plate-2)")
    return name


def concurrent_trials(cluster: dict, per_trial: dict, num_samples: int) -> int:
    """How many trials the cluster holds at once: min over CPU and GPU of have / need, capped by
    the number of trials. Raises ConfigError when not even one fits."""
    fits = []
    for resource in ("CPU", "GPU"):
        need = per_trial.get(resource, 0)
        if need > 0:
            fits.append(math.floor(cluster.get(resource, 0) / need + 1e-9))
    n = min(fits) if fits else num_samples
    if n < 1:
        raise ConfigError(f"one trial needs {per_trial}, more than the cluster has "
                          f"({ {k: cluster.get(k, 0) for k in per_trial} }); lower resources: in the space")
    return min(n, num_samples)


def mark_lost_trials(sweep_dir: Path, known: set) -> None:
    """Trial folders Tune does not know (started by a driver killed before it saved its state)."""
    for trial in sorted((sweep_dir / sweep_files.TRIALS_DIR).glob("*")):
        if trial.is_dir() and trial.name not in known:
            status = fileio.read_json(trial / sweep_files.STATUS_FILE) or {"trial_id": trial.name}
            fileio.write_json(trial / sweep_files.STATUS_FILE, {**status, "status": "lost"})


def _trial_id_of(result) -> str | None:
    path = getattr(result, "path", None)
    return Path(path).name if path else None


def _trial_name(trial) -> str:
    return trial.trial_id


def _scheduler(space: SearchSpace):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if space.scheduler.kind == "fifo":
        return FIFOScheduler()
    first = space.objectives[0]
    return ASHAScheduler(time_attr="epoch", metric=first.metric, mode=first.mode,
                         max_t=space.base_config().epochs, grace_period=space.scheduler.grace_period,
                         reduction_factor=space.scheduler.reduction_factor)


def _init_ray(space: SearchSpace) -> None:
    from rxsweep.cluster import init_ray

    init_ray(num_cpus=space.trial_resources()["CPU"], log_to_driver=True)


def _claim(sweep_dir: Path, identity: dict, resume: bool, space: SearchSpace) -> None:
    previous = fileio.read_json(sweep_dir / sweep_files.SWEEP_FILE)
    if previous is None:
        if resume:
            raise FileNotFoundError(f"{sweep_dir} holds no sweep to resume; run without --resume to start it")
        # logs/: the driver's log, opened before the sweep folder is claimed (rxsweep.cli)
        if sweep_dir.exists() and any(p.name not in (*OWN_FILES, sweep_files.LOGS_DIR) for p in sweep_dir.iterdir()):
            raise FileExistsError(f"{sweep_dir} is not empty and holds no sweep; choose another --name")
        return
    if not resume:
        state = "a finished" if previous.get("finished") else "an unfinished"
        raise FileExistsError(f"{sweep_dir} holds {state} sweep already; pass --resume to continue it, "
                              "or choose another --name")
    before = previous.get("identity", {})
    changed = [k for k, v in identity.items() if before.get(k) != v
               and not (k == "space_sha256" and before.get(k) == space.text_sha256)]  # recorded as text's
    if changed == ["staging"]:
        raise FileExistsError(f"this sweep's driver staged it in {previous['identity']['staging']} and this one in "
                              f"{sweep_dir}: resume it with {STAGING_ENV} set as it was then (an empty folder "
                              "is fine: it is pulled from the URI)")
    if changed == ["space_sha256"]:
        raise FileExistsError(f"{sweep_dir} was started with other values in its space file ("
                              f"{_changed_values(sweep_dir, space)}); resume it with the values it started with "
                              "(comments and layout may change), or choose another --name")
    if changed:
        raise FileExistsError(f"{sweep_dir} was started with another {', '.join(changed)}; resume it with "
                              "the same space file and data, or choose another --name")


def _changed_values(sweep_dir: Path, space: SearchSpace) -> str:
    """'key.path: old -> new' for each value of the space file that differs from the one the sweep
    started with (its copy, sweep_dir/space.yaml)."""
    from rxsweep import yamlio

    started = yamlio.safe_load((sweep_dir / sweep_files.SPACE_FILE).read_text()) or {}
    return "; ".join(f"{key}: {a!r} -> {b!r}" for key, a, b in _diff(started, space.values)) or "unknown"


def _diff(a, b, prefix: str = "") -> list[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for key in sorted(set(a) | set(b), key=str)
                for d in _diff(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def _write_sweep_file(sweep_dir: Path, space: SearchSpace, identity: dict, finished: bool) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / sweep_files.SPACE_FILE).write_text(space.text)
    fileio.write_json(sweep_dir / sweep_files.SWEEP_FILE, {
        "format": sweep_files.FORMAT, "created_by": f"rxsweep {__version__}", "name": space.name,
        "identity": identity, "space_file": str(space.path), "data": identity["data"],
        "objectives": [dataclasses.asdict(o) for o in space.objectives],
        "scheduler": dataclasses.asdict(space.scheduler), "num_samples": space.num_samples,
        "params": [p.name for p in space.params], "epochs": space.base_config().epochs,
        "finished": finished,
    })

