"""What one Ray Tune trial runs: one training run in ``SWEEP_DIR/trials/<trial id>``, so a trial
that Tune starts again (a retry after a failure, a resumed sweep) resumes its own last checkpoint.

- A single-worker trial runs the per-worker loop in the trial's own process
  (worker_context.InProcessContext): the trial holds the worker's CPUs/GPUs itself, writes its
  checkpoints and metrics.jsonl into its run folder and reports each epoch to Tune. No
  TorchTrainer: its controller and worker processes cost ~8 s a trial (bench/RESULTS.md).
- A multi-worker trial configures and runs one TorchTrainer (the workers ask for their own
  CPUs/GPUs; the trial holds a small CPU share and waits); Ray Train's TuneReportCallback forwards
  each epoch's metrics (all-reduced over workers, so rank 0's are everyone's).

Either way each epoch's report carries the batch-mixing scores of its held-out embeddings
(rxsweep.metrics.embedding_scores), which is what the mixing objectives read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rxsweep import fileio, locations
from rxsweep.mirror import Mirror
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space import SearchSpace


def run_trial(config: dict, *, space: SearchSpace, shards_dir: str, sweep_dir: str,
              shared: Any) -> None:
    """Tune trainable. ``config``: the sampled parameters. ``shared``: the SharedInputs of the sweep
    (shard index and Ray Datasets built once by the sweep driver, identical for every trial).
    ``sweep_dir``: the sweep folder's path or URI; at a URI the trial works in a staging copy of
    its own folder on this node, pulled first (a retried trial resumes its checkpoints wherever it
    runs now) and pushed after each epoch's record (run_files.record_epoch) and when it ends."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    location = locations.join(sweep_dir, sweep_files.TRIALS_DIR, trial_id)
    if not locations.is_uri(location):
        _run(config, space, shards_dir, location, Path(location), shared)
        return
    mirror = Mirror(location)
    mirror.pull()
    try:
        _run(config, space, shards_dir, location, mirror.local, shared)
    finally:
        mirror.push()


def _run(config: dict, space: SearchSpace, shards_dir: str, location: str, run_dir: Path, shared: Any) -> None:
    """One trial's training in ``run_dir`` (its folder, or a staging copy of ``location``)."""
    import ray.tune

    from rxsweep.metrics.embedding_scores import epoch_scores
    from rxsweep.training.plan import preflight

    cfg = space.trial_config(config)
    plan = preflight(cfg, shards_dir, index=shared.index)
    _record_trial(run_dir, config, cfg, plan)
    if runs_in_trial_process(space):
        from rxsweep.training.loop import loop_config, run_worker_loop
        from rxsweep.training.worker_context import InProcessContext

        _record_process(run_dir)
        datasets, names = shared.datasets
        context = InProcessContext(run_dir, datasets, cfg.keep_checkpoints, report=ray.tune.report)
        run_worker_loop(loop_config(cfg, plan, names, epoch_scores), context)
        return
    from ray.tune.integration.ray_train import TuneReportCallback

    from rxsweep.training.trainer import build_trainer

    # Ray Train writes the checkpoints at the location itself (a URI is a storage_path to it); the
    # controller, on this node, keeps metrics.jsonl in run_dir.
    trainer = build_trainer(cfg, shards_dir, location.rsplit("/", 1)[0], locations.name(location), log_dir=run_dir,
                            callbacks=[TuneReportCallback()],
                            plan=plan, datasets=shared.datasets, max_failures=space.failures.worker_restarts,
                            epoch_scores=epoch_scores)
    trainer.fit()


def runs_in_trial_process(space: SearchSpace) -> bool:
    """Whether the space's trials train in the trial's own process (one worker) rather than
    through a TorchTrainer (several)."""
    return space.base_config().num_workers == 1


def run_confirm_trial(config: dict, **kwargs) -> None:
    """Tune trainable of a confirmation run (rxsweep.tuning.confirm): a search trial's parameters
    and a seed, under the grid key RUN_KEY. It is judged on its last epoch's held-out test
    embeddings only, so it evaluates the held-out experiments at its last epoch only."""
    from rxsweep.tuning.confirm import RUN_KEY

    run_trial({**config[RUN_KEY], "heldout_eval": "last_epoch"}, **kwargs)


def _record_trial(run_dir: Path, params: dict, cfg, plan) -> None:
    """params.json, config.yaml and splits.parquet, before training starts (a crash still leaves
    them). A restarted trial finds its own parameters there; anything else would resume another
    trial's checkpoints."""
    previous = fileio.read_json(run_dir / sweep_files.PARAMS_FILE)
    if previous is not None and previous != json.loads(json.dumps(params)):
        raise RuntimeError(f"{run_dir} holds a trial with other parameters ({previous}); refusing to resume "
                           f"it as {params}")
    fileio.write_json(run_dir / sweep_files.PARAMS_FILE, params)
    run_files.claim(run_dir, cfg, plan.splits)


def _record_process(run_dir: Path) -> None:
    """Append where this trial's process runs to its processes.jsonl (the node is what a
    multi-node sweep, or a node that died under a trial, is read off)."""
    import socket
    import time

    import ray

    entry = {"time": time.time(), "node_id": ray.get_runtime_context().get_node_id(),
             "hostname": socket.gethostname(), "pid": os.getpid()}
    with open(run_dir / sweep_files.PROCESSES_FILE, "a") as f:  # one short line an append
        f.write(json.dumps(entry) + "\n")
