"""Reading a sweep folder (finished or still running) without Ray: see rxsweep.tuning.layout.

:func:`load_sweep` returns a :class:`Sweep`: the sweep's own record (sweep.json) and one
:class:`Trial` a trial folder, with its parameters, full config, status, per-epoch history and
the path of its final embeddings. Trials marked `lost` (started by a sweep driver that was
killed before saving its state, then forgotten by Tune) are kept apart and counted, never ranked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rxsweep import yamlio
from rxsweep.tuning import layout


@dataclass
class Trial:
    trial_id: str
    path: Path
    status: str  # layout.STATUSES, or "pending" when the folder has no status yet
    params: dict  # the sampled hyperparameters
    config: dict  # the full TrainConfig as a dict
    history: list[dict]  # metrics.jsonl: one dict an epoch
    error: str | None = None
    embeddings: Path | None = None  # final held-out embeddings, when training finished

    @property
    def last(self) -> dict:
        """The last epoch's metrics ({} before the first epoch)."""
        return self.history[-1] if self.history else {}

    @property
    def method(self) -> str:
        return "erm" if self.config.get("domain_label") == "none" else "dann"


@dataclass
class Sweep:
    path: Path
    meta: dict  # sweep.json
    trials: list[Trial]
    lost: list[Trial] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    @property
    def params(self) -> list[str]:
        """The searched hyperparameters, in the space's order."""
        return list(self.meta.get("params", []))

    @property
    def objectives(self) -> list[dict]:
        return list(self.meta.get("objectives", []))

    @property
    def finished(self) -> bool:
        return bool(self.meta.get("finished"))

    @property
    def optuna_storage(self) -> str | None:
        db = self.path / layout.OPTUNA_DB
        return f"sqlite:///{db}" if db.exists() else None


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read SWEEP_DIR; FileNotFoundError naming what is missing if it is not a sweep folder."""
    path = Path(sweep_dir).expanduser().resolve()
    meta = layout.read_json(path / layout.SWEEP_FILE)
    if meta is None:
        raise FileNotFoundError(f"{path} is not a sweep folder: no readable {layout.SWEEP_FILE} "
                                "(run `rxsweep sweep` or `python jobs/sweep.py` to make one)")
    if meta.get("format") != layout.FORMAT:
        raise ValueError(f"{path / layout.SWEEP_FILE}: format {meta.get('format')!r}, this rxsweep reads "
                         f"{layout.FORMAT!r}")
    trials, lost = [], []
    for folder in sorted((path / layout.TRIALS_DIR).glob("*")):
        if not folder.is_dir() or not (folder / layout.PARAMS_FILE).exists():
            continue
        trial = _read_trial(folder)
        (lost if trial.status == "lost" else trials).append(trial)
    return Sweep(path, meta, trials, lost)


def _read_trial(folder: Path) -> Trial:
    status = layout.read_json(folder / layout.STATUS_FILE) or {}
    config_file = folder / layout.CONFIG_FILE
    config = yamlio.safe_load(config_file.read_text()) if config_file.exists() else {}
    return Trial(
        trial_id=folder.name, path=folder, status=status.get("status", "pending"),
        params=layout.read_json(folder / layout.PARAMS_FILE) or {}, config=config or {},
        history=_read_history(folder / layout.METRICS_FILE), error=status.get("error"),
        embeddings=layout.final_embeddings(folder),
    )


def _read_history(path: Path) -> list[dict]:
    """metrics.jsonl; a line being written (the last, cut short) is skipped, not an error."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows
