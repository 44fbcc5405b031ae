"""The seam between rxsweep and Ray Train: the datasets of a run and the TorchTrainer that runs it.

:func:`build_trainer` is what a sweep trial (rxsweep.tuning.trial) and ``rxsweep train``
(rxsweep.training.runner) both call: it configures a TorchTrainer for one run named ``name``
under ``storage_path`` (pass extra Ray Train callbacks, e.g. Tune's ``TuneReportCallback``). The
run folder is ``storage_path/name`` (see run_files.py); a trainer built again with the same pair
resumes from that folder's latest checkpoint (Ray Train V2 reloads its checkpoint manager
snapshot from there, and the loop starts at the next epoch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from ray.train import UserCallback

from rxsweep import locations
from rxsweep.training.config import TrainConfig
from rxsweep.training.placement_groups import PlacementGroupLedger
from rxsweep.training.plan import EVAL_SPLITS, TRAIN_SPLIT, RunPlan, preflight
from rxsweep.training.run_files import record_epoch


def build_datasets(cfg: TrainConfig, plan: RunPlan) -> tuple[dict, dict[str, list[str]]]:
    """Ray Datasets of the run, and each split's dataset name per rank ({split: [name of rank r]};
    one name when one worker reads the whole split).

    Materialised (``materialize: true``), the training split is shuffled once with the run's seed
    (a global permutation), so batches mix plates and experiments; each epoch's local shuffle
    buffer then reorders it with a seed of (seed, epoch, rank). With several workers each reads its
    own fixed part of it (RunPlan.train_sites: disjoint, together the whole split), which adaptive
    resampling draws from. Streamed (``materialize: false``), there is no training dataset (no
    name): each worker streams its part from the shards itself (rxsweep.data.shard_stream). Eval splits are cut into one exact part per worker (no
    row dropped or repeated, unlike an equal streaming split). Every dataset preserves row order,
    so the same seed gives the same batches.
    """
    from rxsweep.data.stream import split_dataset

    def read(split: str, sites=None):
        ds = split_dataset(plan.index, split, sites=sites)
        ds.context.execution_options.preserve_order = True
        return ds

    def shuffled(ds):
        return ds.random_shuffle(seed=cfg.seed).materialize()

    datasets, names = {}, {}
    if not cfg.materialize:
        names[TRAIN_SPLIT] = []
    elif cfg.num_workers == 1:
        datasets[TRAIN_SPLIT], names[TRAIN_SPLIT] = shuffled(read(TRAIN_SPLIT)), [TRAIN_SPLIT]
    else:
        names[TRAIN_SPLIT] = [f"{TRAIN_SPLIT}_rank{r}" for r in range(cfg.num_workers)]
        for r, name in enumerate(names[TRAIN_SPLIT]):
            datasets[name] = shuffled(read(TRAIN_SPLIT, plan.train_sites(r, cfg.num_workers)))
    for split in EVAL_SPLITS:
        ds = read(split)
        if cfg.num_workers == 1:
            datasets[split], names[split] = ds.materialize() if cfg.materialize else ds, [split]
            continue
        names[split] = [f"{split}_rank{r}" for r in range(cfg.num_workers)]
        datasets.update(zip(names[split], ds.split(cfg.num_workers, equal=False)))
    return datasets, names


class MetricsLog(UserCallback):
    """Ray Train callback (runs in the controller, on the driver's node) keeping
    ``run_dir/metrics.jsonl`` equal to the reported epochs (run_files.record_epoch)."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        record_epoch(self.run_dir, metrics[0], checkpoint.path if checkpoint is not None else None)

    def after_exception(self, run_context, worker_exceptions) -> None:
        pass


#: Ray Train controller settings rxsweep changes, unless the environment already sets them.
#: Measured here (Ray 2.60, 2 cores, a 1-worker run of 2 reports): fit() took 13.9 s with Ray's
#: defaults and 6.7-7.8 s with these. The controller polls its workers every 2 s by default, so
#: each report and the end of the run wait ~1 s on average; the preemption watcher (for spot
#: nodes that announce their shutdown) is one more actor process to start for every run. Set
#: RAY_TRAIN_ENABLE_PREEMPTION_WATCHER=1 on clusters of spot instances.
CONTROLLER_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def build_trainer(cfg: TrainConfig, shards_dir: str | Path, storage_path: str | Path, name: str,
                  callbacks: Iterable = (), plan: Optional[RunPlan] = None,
                  datasets: Optional[tuple[dict, dict[str, list[str]]]] = None, max_failures: int = 0,
                  epoch_scores: Optional[Callable] = None, log_dir: str | Path | None = None):
    """A TorchTrainer for one run (Ray must be initialised; preflight runs first if no ``plan``).

    Checkpoints go to ``storage_path/name`` (a path or a URI, as Ray Train takes it), metrics.jsonl
    to ``log_dir``; the same name and storage_path resume the run. ``callbacks``: extra Ray Train UserCallbacks.
    ``datasets``: what :func:`build_datasets` returns, when several runs share one (a sweep).
    ``max_failures``: worker-group restarts from the last checkpoint after a worker dies.
    ``epoch_scores``: a picklable function of an epoch's held-out embeddings table (pyarrow) returning
    metrics to add to that epoch's report (the sweep passes the batch-mixing scores).
    ``log_dir``: where metrics.jsonl and the placement-group ledger go (a local folder: the
    controller runs on this node), default ``storage_path/name``; needed when storage_path is a URI.
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from rxsweep.training.loop import loop_config, train_loop_per_worker

    for key, value in CONTROLLER_ENV.items():  # read by the controller Ray Train starts for fit()
        os.environ.setdefault(key, value)
    plan = plan or preflight(cfg, shards_dir)
    datasets, names = datasets or build_datasets(cfg, plan)
    if log_dir is None and locations.is_uri(storage_path):
        raise ValueError(f"storage_path {storage_path} is a URI: pass log_dir, a local folder for metrics.jsonl")
    log_dir = str(log_dir or Path(storage_path) / name)
    run_config = RunConfig(
        name=name, storage_path=str(storage_path),
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        failure_config=FailureConfig(max_failures=max_failures),
        # metrics.jsonl and the placement-group ledger are written by the controller, which Ray
        # Train starts on this (the driver's) node.
        callbacks=[MetricsLog(log_dir), PlacementGroupLedger(log_dir), *callbacks],
    )
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": cfg.gpus_per_worker} if cfg.use_gpu else {})}
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config(cfg, plan, names, epoch_scores),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=run_config,
        datasets=datasets,
        # Train applies these options to every dataset it hands to workers (by default it copies
        # the controller's DataContext, where preserve_order is off: rows would arrive in
        # completion order and metrics would differ run to run).
        # Every worker reads datasets of its own (build_datasets): no streaming-split coordinator.
        dataset_config=DataConfig(datasets_to_split=[], execution_options=_ingest_options()),
    )


def _ingest_options():
    from ray.data import DataContext, ExecutionOptions

    return ExecutionOptions(preserve_order=True,
                            resource_limits=DataContext.get_current().execution_options.resource_limits)
