"""Checkpoint files: what one epoch's checkpoint directory holds, and reading it back safely.

    checkpoint_epochNNNN/
      state.pt            model, optimiser, scheduler, epoch, step, rng (read with weights_only=True)
      config.yaml         the TrainConfig of the run
      history.jsonl       the reported metrics of epochs 1..NNNN, one JSON object a line
      embeddings.parquet  final epoch only: held-out embeddings (see embeddings.py)

Everything in state.pt is a tensor, a number, a string, None or a list/dict of those, so
``torch.load(weights_only=True)`` reads it without running pickled code: NumPy's and Python's RNG
states are stored as plain tensors and ints, not as the tuples their getters return.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
HISTORY_FILE = "history.jsonl"
EMBEDDINGS_FILE = "embeddings.parquet"


def checkpoint_dir_name(epoch: int) -> str:
    """Name of an epoch's checkpoint inside the run directory (sorts by epoch)."""
    return f"checkpoint_epoch{epoch:04d}"


def rng_state(generators: dict[str, torch.Generator] | None = None) -> dict[str, Any]:
    """This process's RNG states (torch, CUDA, NumPy, Python, plus named torch Generators) as
    weights_only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                   "gauss": gauss},
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator] | None = None) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    for name, g in (generators or {}).items():
        if name in state["generators"]:
            g.set_state(state["generators"][name])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(directory: str | Path, *, model: torch.nn.Module, optimizer, scheduler,
                    epoch: int, step: int, rng: dict, config_yaml: str, history: list[dict]) -> None:
    """Write an epoch's checkpoint files into ``directory`` (rank 0 only)."""
    directory = Path(directory)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": int(epoch), "step": int(step), "rng": rng},
               directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(config_yaml)
    write_history(directory / HISTORY_FILE, history)


def load_state(directory: str | Path) -> dict:
    """Read state.pt with ``weights_only=True``."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} is not an rxsweep checkpoint: no {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_history(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_history(path: str | Path, history: list[dict]) -> None:
    """One JSON object a line; NaN (ERM's domain metrics) is written as null to stay valid JSON.
    Written to a temporary name and renamed, so a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(json_safe(m)) + "\n" for m in history))
    tmp.replace(path)


def json_safe(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
