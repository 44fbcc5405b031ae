"""What bench/chaos.py checks in a sweep folder: every record parses, every epoch a trial reported
is there at the end exactly as it was first seen (not lost, not trained again), every trial and
confirmation run ended, the verdict was written. Reads the folder at the URI (what a user keeps)."""

from __future__ import annotations

import json
from pathlib import Path

from rxsweep import fileio
from rxsweep.analysis.report import REPORT_FILE
from rxsweep.analysis.sweep_folder import load_sweep
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files


class EpochLedger:
    """Each (run folder, epoch) line of metrics.jsonl as first seen at the URI while the sweep ran.
    An epoch whose line later changes was trained again after it was reported; one that goes
    missing was lost."""

    def __init__(self, sweep_dir: Path) -> None:
        self.sweep_dir, self.first_seen = sweep_dir, {}

    def observe(self) -> int:
        """Read every metrics.jsonl now; returns how many epochs are recorded."""
        for path in self.sweep_dir.rglob(run_files.METRICS_FILE) if self.sweep_dir.exists() else []:
            try:
                lines = path.read_text().splitlines()
            except OSError:  # replaced while read: the next poll sees it
                continue
            for line in lines:
                try:
                    epoch = json.loads(line)["epoch"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line is counted by audit(), at the end
                self.first_seen.setdefault((path.parent.relative_to(self.sweep_dir).as_posix(), epoch), line)
        return len(self.first_seen)


def records(sweep_dir: Path) -> list[Path]:
    """Every JSON and JSON-lines record rxsweep wrote under the sweep folder. Tune's own folders
    (tune/, confirm/tune/) are Tune's formats (result.json is JSON lines, search_gen_state-*.json a
    pickle): Tune reads them back on --resume, which is their test."""
    return [path for path in sorted(sweep_dir.rglob("*.json*"))
            if path.is_file() and not path.name.endswith(fileio.TMP_SUFFIX)
            and sweep_files.TUNE_DIR not in path.relative_to(sweep_dir).parts]


def unparseable_records(paths: list[Path]) -> list[str]:
    """Each of ``paths`` (records()) that does not parse whole, with why."""
    bad = []
    for path in paths:
        try:
            if path.suffix == ".jsonl":
                records = fileio.read_jsonl(path)
                if records.torn:
                    bad.append(f"{path}: a torn last line")
            else:
                json.loads(path.read_text())
        except ValueError as exc:
            bad.append(f"{path}: {exc}")
    return bad


def audit(sweep_dir: Path, ledger: EpochLedger | None = None, epochs: int | None = None) -> dict:
    """The sweep's end state: trials and confirmation runs and how they ended, epochs missing,
    twice or changed since first seen, records that do not parse, whether the verdict exists."""
    sweep = load_sweep(sweep_dir)
    runs = {Path(t.path).relative_to(sweep.path).as_posix(): t for t in [*sweep.trials, *sweep.confirm]}
    missing, twice = [], []
    for name, trial in runs.items():
        recorded = [m["epoch"] for m in trial.history]
        # an errored run's untrained epochs are not lost records: it counts against its fault instead
        full = epochs if epochs and trial.status != "error" else max(recorded, default=0)
        expected = list(range(1, full + 1))
        missing += [f"{name} epoch {e}" for e in expected if e not in recorded]
        twice += [f"{name} epoch {e}" for e in set(recorded) if recorded.count(e) > 1]
    changed = []
    if ledger is not None:
        ledger_now = EpochLedger(sweep_dir)
        ledger_now.observe()
        for key, line in ledger.first_seen.items():
            now = ledger_now.first_seen.get(key)
            if now is None:
                missing.append(f"{key[0]} epoch {key[1]} (seen while the sweep ran)")
            elif now != line:
                changed.append(f"{key[0]} epoch {key[1]}")
    checked = records(sweep_dir)
    bad = unparseable_records(checked)
    return {
        "finished": bool(sweep.meta.get("finished")),
        "trials": len(sweep.trials), "lost_trials": len(sweep.lost),
        "confirm_runs": len(sweep.confirm),
        "statuses": sorted({t.status for t in [*sweep.trials, *sweep.confirm]}),
        "runs": {name: [trial.status, len(trial.history)] for name, trial in runs.items()},
        # when each run that errored ended (status.json): the fault just before it is the one not survived
        "errored_at": {name: (fileio.read_json(Path(trial.path) / sweep_files.STATUS_FILE) or {}).get("ended_at")
                       for name, trial in runs.items() if trial.status == "error"},
        "epochs": sum(len(t.history) for t in runs.values()),
        "epochs_missing": missing, "epochs_twice": twice, "epochs_trained_again": changed,
        "unparseable_records": bad,
        "records_checked": len(checked),
        # partial uploads of killed pushes: never read (a mirror skips *.tmp), left at the URI
        "partial_uploads_left": len(list(sweep_dir.rglob("*" + fileio.TMP_SUFFIX))),
        "verdict": (sweep_dir / sweep_files.VERDICT_FILE).is_file() and (sweep_dir / REPORT_FILE).is_file(),
        "records_lost": len(missing) + len(twice) + len(changed) + len(bad),
    }
