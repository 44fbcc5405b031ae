"""Reading a sweep folder (finished or still running) without Ray: see rxsweep.tuning.sweep_files.

:func:`load_sweep` returns a :class:`Sweep`: the sweep's own record (sweep.json) and one
:class:`Trial` a trial folder, with its parameters, full config, status, per-epoch history and
the path of its final embeddings. Trials marked `lost` (started by a sweep driver that was
killed before saving its state, then forgotten by Tune) are kept apart and counted, never ranked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rxsweep import fileio, yamlio
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files


@dataclass
class Trial:
    trial_id: str
    path: Path
    status: str  # sweep_files.STATUSES, or "pending" when the folder has no status yet
    params: dict  # the sampled hyperparameters
    config: dict  # the full TrainConfig as a dict
    history: list[dict]  # metrics.jsonl: one dict an epoch
    error: str | None = None
    embeddings: Path | None = None  # held-out embeddings of the last checkpointed epoch

    @property
    def last(self) -> dict:
        """The last epoch's metrics ({} before the first epoch)."""
        return self.history[-1] if self.history else {}

    @property
    def method(self) -> str:
        """erm | dann | cdann (TrainConfig.method; a config from before `adversary` existed is dann)."""
        return "erm" if self.config.get("domain_label") == "none" else self.config.get("adversary", "dann")


@dataclass
class Sweep:
    path: Path
    meta: dict  # sweep.json
    trials: list[Trial]  # the search's
    lost: list[Trial] = field(default_factory=list)
    confirm: list[Trial] = field(default_factory=list)  # the confirmation runs (confirm/trials)

    @property
    def confirm_record(self) -> dict:
        """confirm/confirm.json: {method: {source_trial, params, search_seeds, seeds, trial_ids}} ({} if none)."""
        return fileio.read_json(self.path / sweep_files.CONFIRM_DIR / sweep_files.CONFIRM_FILE) or {}

    @property
    def features_baseline(self) -> Path | None:
        """The hand-made-features baseline's held-out table, if the sweep computed it."""
        path = self.path / sweep_files.BASELINE_EMBEDDINGS
        return path if path.exists() else None

    @property
    def embeddings_arms(self) -> dict[str, Path]:
        """{NAME: its held-out table} of each `--embeddings NAME=FILE` arm the sweep computed
        (rxsweep.training.embeddings_arm), by NAME."""
        folder = self.path / sweep_files.EMBEDDINGS_ARMS_DIR
        found = sorted(folder.glob("*/embeddings.parquet")) if folder.is_dir() else []
        return {p.parent.name: p for p in found}

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
        db = self.path / sweep_files.OPTUNA_DB
        return f"sqlite:///{db}" if db.exists() else None


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read SWEEP_DIR; FileNotFoundError naming what is missing if it is not a sweep folder."""
    path = Path(sweep_dir).expanduser().resolve()
    meta = fileio.read_json(path / sweep_files.SWEEP_FILE)
    if meta is None:
        raise FileNotFoundError(f"{path} is not a sweep folder: no readable {sweep_files.SWEEP_FILE} "
                                "(run `rxsweep sweep` or `python jobs/sweep.py` to make one)")
    if meta.get("format") != sweep_files.FORMAT:
        raise ValueError(f"{path / sweep_files.SWEEP_FILE}: format {meta.get('format')!r}, this rxsweep reads "
                         f"{sweep_files.FORMAT!r}")
    trials, lost = [], []
    for trial in load_trials(path):
        (lost if trial.status == "lost" else trials).append(trial)
    return Sweep(path, meta, trials, lost, load_trials(path / sweep_files.CONFIRM_DIR))


def load_trials(folder: Path) -> list[Trial]:
    """The trial folders under FOLDER/trials (a sweep's search, or its confirm/ stage): each with
    its parameters, or only its status (a trial that failed before it wrote them: its process or
    node was lost while it started; bench/chaos.py found one that listed nowhere)."""
    return [_read_trial(trial) for trial in sorted((folder / sweep_files.TRIALS_DIR).glob("*"))
            if trial.is_dir() and any((trial / f).exists() for f in (sweep_files.PARAMS_FILE, sweep_files.STATUS_FILE))]


def _read_trial(folder: Path) -> Trial:
    status = fileio.read_json(folder / sweep_files.STATUS_FILE) or {}
    error = status.get("error")
    try:
        history = run_files.read_history(folder / run_files.METRICS_FILE)
    except ValueError as exc:  # shown on the trial's row, never dropped
        history, error = [], f"unreadable metrics: {exc}"
    config_file = folder / run_files.CONFIG_FILE
    params = fileio.read_json(folder / sweep_files.PARAMS_FILE) or status.get("params") or {}
    # no config.yaml: the trial failed before writing it; its sampled parameters name its method
    config = yamlio.safe_load(config_file.read_text()) if config_file.exists() else dict(params)
    return Trial(
        trial_id=folder.name, path=folder, status=status.get("status", "pending"),
        params=params, config=config or {},
        history=history, error=error,
        embeddings=run_files.final_embeddings(folder),
    )
