"""The sweep folder: what a sweep writes, where, and in what order. Read by rxsweep.analysis.
Each trial folder is a run folder (rxsweep.training.run_files) plus the sweep's own records.

    SWEEP_DIR/                     = STORAGE/NAME (at a URI, the same files; each process works
                                   in a staging copy: rxsweep.tuning.sweep_storage)
      sweep.json                   identity (space file hash, data), objectives, settings; written
                                   before the first trial. `finished` is set when Tune returns.
      space.yaml                   the search space as given
      optuna.db                    the Optuna study (SQLite): `optuna-dashboard sqlite:///optuna.db`
      trials/<trial_id>/           one folder a trial, named by Tune's trial id (never a timestamp);
                                   it is also the trial's Ray Train run folder, so a restarted
                                   trial resumes its own checkpoints
        params.json                the sampled hyperparameters
        config.yaml                the trial's full TrainConfig
        splits.parquet             site_id -> split of every site (what analysis reads, never the shards)
        metrics.jsonl              one JSON line an epoch, epochs 1..e exactly once; the last
                                   epoch's line also holds the batch-mixing scores
        checkpoint_epochNNNN/      checkpoints, each with embeddings.parquet (held-out embeddings
                                   and log-probabilities of that epoch's model)
        processes.jsonl            single-worker trials: where the trial's process ran, one line
                                   each time it started (time, node_id, hostname, pid): a
                                   retried or resumed trial has one line a start
        placement_groups.jsonl     multi-worker trials: the placement groups its Train run reserved,
                                   one line a worker group (rxsweep.training.placement_groups)
        status.json                running | completed | stopped (early, by the scheduler) |
                                   error (with the message) | lost (started, then forgotten by a
                                   sweep driver killed before it saved its state; never ranked);
                                   started_at / ended_at; released_placement_groups (if the sweep
                                   driver had to give back a group the trial left reserved)
      tune/                        Ray Tune's experiment folder (what --resume restores)
      baselines/features/embeddings.parquet
                                   the hand-made-features baseline's held-out predictions and
                                   standardised features, in the embeddings schema
                                   (rxsweep.training.features_baseline)
      baselines/embeddings/<NAME>/embeddings.parquet
                                   the same for each `--embeddings NAME=FILE`: the user's own
                                   vectors through the baseline's linear probe, with the source
                                   file's path and sha256 (rxsweep.training.embeddings_arm)
      confirm/                     the confirmation runs (rxsweep.tuning.confirm): confirm.json
                                   (each method's chosen configuration, seeds, trial ids), trials/
                                   and tune/ as above
      verdict.json                 the verdict on held-out test experiments (rxsweep.analysis.verdict)
      logs/driver.log              what Ray, Ray Tune and the sweep driver printed (`rxsweep sweep`
                                   shows its own progress instead; --verbose: everything, no log);
                                   appended to by each driver of the sweep (a --resume too)
"""

from __future__ import annotations

from pathlib import Path

SWEEP_FILE = "sweep.json"
SPACE_FILE = "space.yaml"
OPTUNA_DB = "optuna.db"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
# the sweep's records in each trial's run folder
PARAMS_FILE = "params.json"
STATUS_FILE = "status.json"
PROCESSES_FILE = "processes.jsonl"
BASELINE_EMBEDDINGS = "baselines/features/embeddings.parquet"
EMBEDDINGS_ARMS_DIR = "baselines/embeddings"
CONFIRM_DIR = "confirm"
CONFIRM_FILE = "confirm.json"
#: confirm.json's group of the adaptive-resampling trials, when a sweep ran trials with and without
#: AR (rxsweep.tuning.confirm); its record's ``base_method`` is the chosen trial's own method.
AR_GROUP = "ar"
VERDICT_FILE = "verdict.json"
LOGS_DIR = "logs"
DRIVER_LOG = f"{LOGS_DIR}/driver.log"
FORMAT = "rxsweep-sweep/1"
STATUSES = ("running", "completed", "stopped", "error", "lost")


def trial_dir(sweep_dir: str | Path, trial_id: str) -> Path:
    return Path(sweep_dir) / TRIALS_DIR / trial_id


def embeddings_arm_path(sweep_dir: str | Path, name: str) -> Path:
    """SWEEP_DIR/baselines/embeddings/NAME/embeddings.parquet: the arm of `--embeddings NAME=FILE`."""
    return Path(sweep_dir) / EMBEDDINGS_ARMS_DIR / name / "embeddings.parquet"
