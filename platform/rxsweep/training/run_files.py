"""The run folder: what one training run (``rxsweep train``, or one sweep trial) writes, where.

    RUN_DIR/
      config.yaml                      the full TrainConfig (written before training; claims the folder)
      splits.parquet                   site_id -> split of every site of the shard index, with the
                                       columns analysis needs to use it (experiment, plate, well_id,
                                       cell_type, well_type, label): the run's data split as a value
      metrics.jsonl                    one JSON line an epoch, epochs 1..N exactly once (NaN as null)
      checkpoint_epochNNNN/            checkpoints (the last `keep_checkpoints`; written by Ray Train,
                                       or by a single-worker sweep trial itself: worker_context.py):
        state.pt                       model, optimiser, scheduler, epoch, step, RNG (weights_only)
        config.yaml                    the run's TrainConfig
        history.jsonl                  the metrics of epochs 1..NNNN
        embeddings.parquet             held-out embeddings and log-probabilities of this epoch's model
      checkpoint_manager_snapshot.json Ray Train's own record of them (what its resuming reads)
      placement_groups.jsonl           the placement groups Ray Train reserved (placement_groups.py)
      embeddings.parquet               `rxsweep train`: copy of the final checkpoint's embeddings
      result.json                      `rxsweep train`: final metrics + checkpoint; written last

A sweep adds its own records to each trial's run folder (rxsweep.tuning.sweep_dir).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rxsweep import fileio
from rxsweep.mirror import Mirror
from rxsweep.training.config import ConfigError, TrainConfig

CONFIG_FILE = "config.yaml"
SPLITS_FILE = "splits.parquet"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
EMBEDDINGS_FILE = "embeddings.parquet"
LEDGER_FILE = "placement_groups.jsonl"
# inside a checkpoint folder
STATE_FILE = "state.pt"
HISTORY_FILE = "history.jsonl"
#: The site-table columns splits.parquet keeps besides site_id and split.
SPLIT_COLUMNS = ("site_id", "split", "experiment", "plate", "well_id", "cell_type", "well_type", "label")


def checkpoint_dir_name(epoch: int) -> str:
    """Name of an epoch's checkpoint inside the run folder (sorts by epoch)."""
    return f"checkpoint_epoch{epoch:04d}"


def checkpoints(run_dir: str | Path) -> list[Path]:
    """The run's whole checkpoint folders, oldest epoch first. A folder without its history (the
    file a checkpoint writes last) is one whose copy was cut short (a push to a URI: rxsweep.mirror
    sends files in the order they were written); a rerun of that epoch writes it again."""
    return sorted(p for p in Path(run_dir).glob("checkpoint_epoch*") if (p / HISTORY_FILE).is_file())


def record_epoch(run_dir: str | Path, metrics: dict, checkpoint: str | Path | None) -> None:
    """Keep RUN_DIR/metrics.jsonl equal to the reported epochs 1..e after epoch e's report: a
    restarted run that repeats an epoch replaces its line; lines lost to a crash are restored from
    the checkpoint's history."""
    path = Path(run_dir) / METRICS_FILE
    epoch = int(metrics["epoch"])
    kept = [m for m in read_history(path) if int(m["epoch"]) < epoch]
    if [int(m["epoch"]) for m in kept] != list(range(1, epoch)) and checkpoint is not None:
        kept = [m for m in read_history(Path(checkpoint) / HISTORY_FILE) if int(m["epoch"]) < epoch]
    write_history(path, kept + [metrics])
    mirror = Mirror.of(run_dir)  # a staging copy of a run folder at a URI: the epoch goes there now
    if mirror is not None:
        mirror.push()


def final_embeddings(run_dir: str | Path) -> Path | None:
    """The embeddings of a run's last checkpointed epoch (every epoch writes them), if any."""
    found = sorted(Path(run_dir).glob(f"checkpoint_epoch*/{EMBEDDINGS_FILE}"))
    return found[-1] if found else None


def read_history(path: str | Path) -> fileio.JsonLines:
    """metrics.jsonl (or a checkpoint's history.jsonl): per-epoch metrics, oldest first; a torn last
    line is skipped and counted, any other bad line is an error naming file and line."""
    return fileio.read_jsonl(path)


def write_history(path: str | Path, history: list[dict]) -> None:
    """One JSON object a line, NaN (ERM's domain metrics) as null; written atomically."""
    fileio.write_text(path, "".join(json.dumps(fileio.json_safe(m)) + "\n" for m in history))


def claim(run_dir: str | Path, cfg: TrainConfig, splits: pd.DataFrame | None = None) -> None:
    """Make ``run_dir`` this run's folder, or check that it already is.

    A folder holding another config is refused (ConfigError naming what differs), unless only
    fields a run may resume with changed (config.RESUMABLE_CHANGES: workers, resources, streaming);
    the config is written, and with ``splits`` (site_id, split and SPLIT_COLUMNS) splits.parquet."""
    run_dir = Path(run_dir)
    saved = run_dir / CONFIG_FILE
    if saved.exists():
        diff = TrainConfig.from_yaml(saved).unresumable_diff(cfg)
        if diff:
            detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{run_dir} holds a run with another config ({detail}); choose another "
                              "folder, or delete that one to start over")
    fileio.write_text(saved, cfg.to_yaml())  # what the run now runs with (workers may differ)
    if splits is not None:
        write_splits(run_dir, splits)


def write_splits(run_dir: str | Path, splits: pd.DataFrame) -> None:
    """splits.parquet: one row a site of the shard index (see SPLIT_COLUMNS)."""
    missing = [c for c in SPLIT_COLUMNS if c not in splits.columns]
    if missing:
        raise ValueError(f"splits lack the columns {missing}")
    frame = splits.loc[:, list(SPLIT_COLUMNS)].reset_index(drop=True)
    with fileio.atomic_path(Path(run_dir) / SPLITS_FILE) as tmp:
        frame.to_parquet(tmp, index=False)


def read_splits(run_dir: str | Path) -> pd.DataFrame | None:
    """The run's splits.parquet, or None if the run wrote none (made by an older rxsweep)."""
    path = Path(run_dir) / SPLITS_FILE
    return pd.read_parquet(path) if path.is_file() else None
