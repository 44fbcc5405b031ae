"""Checkpoint files: writing one epoch's checkpoint folder and reading it back safely (its file
names are part of the run-folder contract, run_files.py).

Everything in state.pt is a tensor, a number, a string, None or a list/dict of those, so
``torch.load(weights_only=True)`` reads it without running pickled code: NumPy's and Python's RNG
states are stored as plain tensors and ints, not as the tuples their getters return.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rxsweep.training.run_files import CONFIG_FILE, HISTORY_FILE, STATE_FILE, write_history


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
                    epoch: int, step: int, rng: dict, config_yaml: str, history: list[dict],
                    resampling: dict | None = None) -> None:
    """Write an epoch's checkpoint files into ``directory`` (rank 0 only). ``resampling``: the
    adaptive-resampling state (tensors; rxsweep.training.resampler), which draws the next epoch."""
    directory = Path(directory)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "epoch": int(epoch), "step": int(step), "rng": rng}
    if resampling is not None:
        state["resampling"] = resampling
    torch.save(state, directory / STATE_FILE)
    (directory / CONFIG_FILE).write_text(config_yaml)
    write_history(directory / HISTORY_FILE, history)


def load_state(directory: str | Path) -> dict:
    """Read state.pt with ``weights_only=True``."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} is not an rxsweep checkpoint: no {STATE_FILE}")
    return torch.load(path, map_location="cpu", weights_only=True)
