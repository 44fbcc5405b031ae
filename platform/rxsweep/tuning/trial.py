"""The trial driver: what one Ray Tune trial runs.

It only configures and runs one TorchTrainer (the workers ask for their own CPUs/GPUs; the driver
holds a small CPU share and waits), named after the trial id in ``SWEEP_DIR/trials``, so a trial
that Tune restarts (a crashed driver, a resumed sweep) resumes its own last checkpoint. Ray Train's
TuneReportCallback forwards each epoch's metrics (all-reduced over workers, so rank 0's are
everyone's); the last epoch's also carry the batch-mixing scores of the held-out embeddings
(rxsweep.metrics.embedding_scores), which is what the mixing objectives read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rxsweep import fileio
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files
from rxsweep.tuning.space import SearchSpace


def run_trial(config: dict, *, space: SearchSpace, shards_dir: str, sweep_dir: str,
              shared: Any) -> None:
    """Tune trainable. ``config``: the sampled parameters. ``shared``: the SharedInputs of the sweep
    (shard index and Ray Datasets built once by the sweep driver, identical for every trial)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from rxsweep.metrics.embedding_scores import epoch_scores
    from rxsweep.training.plan import preflight
    from rxsweep.training.trainer import build_trainer

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = space.trial_config(config)
    run_dir = sweep_files.trial_dir(sweep_dir, trial_id)
    plan = preflight(cfg, shards_dir, index=shared.index)
    _record_trial(run_dir, config, cfg, plan)
    trainer = build_trainer(cfg, shards_dir, run_dir.parent, trial_id, callbacks=[TuneReportCallback()],
                            plan=plan, datasets=shared.datasets, max_failures=space.failures.worker_restarts,
                            epoch_scores=epoch_scores)
    trainer.fit()


def run_confirm_trial(config: dict, **kwargs) -> None:
    """Tune trainable of a confirmation run (rxsweep.tuning.confirm): a search trial's parameters
    and a seed, under the grid key RUN_KEY."""
    from rxsweep.tuning.confirm import RUN_KEY

    run_trial(config[RUN_KEY], **kwargs)


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
