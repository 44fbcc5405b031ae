"""``rxsweep train``: one run, locally or on a cluster, without Tune, into a run folder (run_files.py).

``train(data, out)`` checks everything it can before Ray starts, claims ``out`` (the same command
again resumes the run; another config there is refused), runs one TorchTrainer (trainer.py),
prints one line an epoch as metrics.jsonl gains it, and writes result.json last.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from rxsweep import fileio
from rxsweep.training.config import TrainConfig
from rxsweep.training.plan import preflight
from rxsweep.training.run_files import (EMBEDDINGS_FILE, METRICS_FILE, RESULT_FILE, checkpoint_dir_name, claim,
                                      read_history)
from rxsweep.training.trainer import build_trainer

#: Metrics printed per epoch by train(), in this order (all of them go to metrics.jsonl).
PRINTED = ("epoch", "train_loss", "label_loss", "domain_loss", "train_acc", "domain_acc", "lambda",
           "val_acc", "heldout_val_acc", "heldout_test_acc", "images_per_s")


def load_config(config: str | Path | TrainConfig | None = None, overrides: dict | None = None) -> TrainConfig:
    if isinstance(config, TrainConfig):
        cfg = config
    else:
        cfg = TrainConfig.from_yaml(config) if config is not None else TrainConfig()
    return cfg.with_overrides(overrides) if overrides else cfg


def train(data: str | Path, out: str | Path, config: str | Path | TrainConfig | None = None,
          overrides: dict | None = None, echo: bool = True) -> dict[str, Any]:
    """Run one training run locally (no Tune) into ``out`` and return its final metrics.

    Everything that can be checked without Ray is checked first (ConfigError). Running it again
    with the same ``out`` resumes from the last checkpoint, or returns at once if the run is
    complete; a different config for an existing ``out`` is refused.
    """
    cfg = load_config(config, overrides)
    plan = preflight(cfg, data)
    out = Path(out).expanduser().resolve()
    claim(out, cfg, plan.splits)
    if (out / RESULT_FILE).exists():
        result = json.loads((out / RESULT_FILE).read_text())
        _say(echo, f"{out} holds a completed run; final metrics in {out / RESULT_FILE}")
        return result["metrics"]

    from rxsweep.cluster import init_ray

    init_ray(num_cpus=cfg.num_workers * cfg.cpus_per_worker + 1)  # the workers plus Ray Data's reads
    trainer = build_trainer(cfg, data, out.parent, out.name, plan=plan)
    printer = _Printer(out / METRICS_FILE, cfg.epochs, echo)
    printer.start()
    try:
        result = trainer.fit()
    finally:
        printer.stop()
    # A rerun of a run killed after its last report trains nothing and may come back without a
    # checkpoint in its result; the last epoch's checkpoint is then the final one.
    final_dir = (Path(result.checkpoint.path) if result.checkpoint
                 else out / checkpoint_dir_name(cfg.epochs))
    shutil.copyfile(final_dir / EMBEDDINGS_FILE, out / EMBEDDINGS_FILE)
    metrics = read_history(out / METRICS_FILE)[-1]
    fileio.write_json(out / RESULT_FILE, {"metrics": metrics, "checkpoint": str(final_dir),
                                    "method": cfg.method, "epochs": cfg.epochs})
    return metrics


def _say(enabled: bool, message: str) -> None:
    if enabled:
        print(message, flush=True)


def format_metrics(m: dict, epochs: int) -> str:
    """One line an epoch: the PRINTED metrics as key=value."""
    parts = [f"epoch={m['epoch']}/{epochs}"]
    for k in PRINTED[1:]:
        v = m.get(k)
        parts.append(f"{k}={'nan' if v is None else (f'{v:.1f}' if k == 'images_per_s' else f'{v:.4f}')}")
    return " ".join(parts)


class _Printer:
    """Prints each epoch's line as metrics.jsonl gains it (the controller writes that file)."""

    def __init__(self, path: Path, epochs: int, enabled: bool) -> None:
        self.path, self.epochs, self.enabled = path, epochs, enabled
        self.seen = {int(m["epoch"]): m for m in read_history(path)}  # before this run
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def stop(self) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._poll()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._poll()

    def _poll(self) -> None:
        try:
            history = read_history(self.path)
        except (OSError, ValueError):  # replaced between listing and reading: next poll
            return
        for m in history:
            if self.seen.get(int(m["epoch"])) != m:
                self.seen[int(m["epoch"])] = m
                print(format_metrics(m, self.epochs), file=sys.stdout, flush=True)
