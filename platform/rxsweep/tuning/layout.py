"""The sweep folder: what a sweep writes, where, and in what order. Read by rxsweep.analysis.

    SWEEP_DIR/                     = STORAGE/NAME
      sweep.json                   identity (space file hash, data), objectives, settings; written
                                   before the first trial. `finished` is set when Tune returns.
      space.yaml                   the search space as given
      optuna.db                    the Optuna study (SQLite): `optuna-dashboard sqlite:///optuna.db`
      trials/<trial_id>/           one folder a trial, named by Tune's trial id (never a timestamp);
                                   it is also the trial's Ray Train run folder, so a restarted
                                   trial resumes its own checkpoints
        params.json                the sampled hyperparameters
        config.yaml                the trial's full TrainConfig
        metrics.jsonl              one JSON line an epoch, epochs 1..e exactly once; the last
                                   epoch's line also holds the batch-mixing scores
        checkpoint_epochNNNN/      Ray Train checkpoints; the final epoch's holds embeddings.parquet
                                   (held-out embeddings and log-probabilities of the final model)
        status.json                running | completed | stopped (early, by the scheduler) |
                                   error (with the message) | lost (started, then forgotten by a
                                   sweep driver killed before it saved its state; never ranked)
      tune/                        Ray Tune's experiment folder (what --resume restores)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

SWEEP_FILE = "sweep.json"
SPACE_FILE = "space.yaml"
OPTUNA_DB = "optuna.db"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
PARAMS_FILE = "params.json"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
EMBEDDINGS_FILE = "embeddings.parquet"
STATUS_FILE = "status.json"
FORMAT = "rxsweep-sweep/1"
STATUSES = ("running", "completed", "stopped", "error", "lost")


def trial_dir(sweep_dir: str | Path, trial_id: str) -> Path:
    return Path(sweep_dir) / TRIALS_DIR / trial_id


def final_embeddings(trial: Path) -> Path | None:
    """The embeddings of a trial's last epoch, if it finished training."""
    found = sorted(trial.glob(f"checkpoint_epoch*/{EMBEDDINGS_FILE}"))
    return found[-1] if found else None


def write_json(path: Path, payload: dict) -> None:
    """Write JSON atomically (temporary name, then rename): a reader never sees half a file.
    NaN is written as null, so the file stays valid JSON for every reader."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    payload = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in payload.items()}
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
