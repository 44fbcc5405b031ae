"""The trial driver: what one Ray Tune trial runs.

It only configures and runs one TorchTrainer (the workers ask for their own CPUs/GPUs; the driver
holds a small CPU share and waits), named after the trial id in ``SWEEP_DIR/trials``, so a trial
that Tune restarts (a crashed driver, a resumed sweep) resumes its own last checkpoint. Ray Train's
TuneReportCallback forwards each epoch's metrics (all-reduced over workers, so rank 0's are
everyone's); the last epoch's also carry the batch-mixing scores of the held-out embeddings
(rxsweep.analysis.scoring), which is what the mixing objectives read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rxsweep.tuning import layout
from rxsweep.tuning.space import SearchSpace


def run_trial(config: dict, *, space: SearchSpace, shards_dir: str, sweep_dir: str,
              shared: Any) -> None:
    """Tune trainable. ``config``: the sampled parameters. ``shared``: the SharedInputs of the sweep
    (shard index and Ray Datasets built once by the sweep driver, identical for every trial)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from rxsweep.analysis.scoring import end_of_run_scores
    from rxsweep.training.driver import build_trainer
    from rxsweep.training.plan import preflight

    trial_id = ray.tune.get_context().get_trial_id()
    cfg = space.trial_config(config)
    run_dir = layout.trial_dir(sweep_dir, trial_id)
    _record_trial(run_dir, config, cfg)
    plan = preflight(cfg, shards_dir, index=shared.index)
    trainer = build_trainer(cfg, shards_dir, run_dir.parent, trial_id, callbacks=[TuneReportCallback()],
                            plan=plan, datasets=shared.datasets, max_failures=space.failures.worker_restarts,
                            end_of_run_scores=end_of_run_scores)
    trainer.fit()


def _record_trial(run_dir: Path, params: dict, cfg) -> None:
    """params.json and config.yaml, before training starts (a crash still leaves them). A restarted
    trial finds its own parameters there; anything else would resume another trial's checkpoints."""
    previous = layout.read_json(run_dir / layout.PARAMS_FILE)
    if previous is not None and previous != json.loads(json.dumps(params)):
        raise RuntimeError(f"{run_dir} holds a trial with other parameters ({previous}); refusing to resume "
                           f"it as {params}")
    run_dir.mkdir(parents=True, exist_ok=True)
    layout.write_json(run_dir / layout.PARAMS_FILE, params)
    tmp = run_dir / (layout.CONFIG_FILE + ".tmp")
    tmp.write_text(cfg.to_yaml())
    tmp.replace(run_dir / layout.CONFIG_FILE)
