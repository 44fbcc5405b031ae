"""What a smoke sweep (`rxsweep sweep --smoke`, rxsweep.tuning.smoke) ran and what failed, read
off its folder: one row a run (the search's trials, then the confirmation runs) and one row a
stage after them (ranking, verdict, report), each `ok` or `FAILED` with the reason.

A run passes when it ended `completed` or `stopped` (ASHA may stop a trial after its first
epoch), its metrics.jsonl holds epochs 1..n once each, a run that got past its fault-drill epoch
was restarted (so it resumed from that epoch's checkpoint: a restart that began again would have
raised at that epoch again), and a search trial reported its mixing score.
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass
from pathlib import Path

from rxsweep import fileio
from rxsweep.analysis.sweep_folder import Trial, load_sweep
from rxsweep.training import run_files
from rxsweep.tuning import sweep_files

PASSING = ("completed", "stopped")


@dataclass
class SmokeRow:
    stage: str  # search | confirm | ranking | verdict | report
    name: str  # trial id, or the stage's
    what: str  # the run's choices, or the stage's outcome
    problem: str | None = None  # None: ok

    @property
    def ok(self) -> bool:
        return self.problem is None


def try_stage(stage: str, work) -> SmokeRow:
    """Run ``work()`` (it returns what to show, or None for "ok") as a row of the table: a failure
    is the row's problem, with its traceback on stderr; the next stage is still tried."""
    try:
        return SmokeRow(stage, "", work() or "ok")
    except Exception as exc:
        traceback.print_exc()
        return SmokeRow(stage, "", "-", f"{type(exc).__name__}: {exc}")


def run_rows(sweep_dir: str | Path) -> list[SmokeRow]:
    """One row a run of the sweep in ``sweep_dir``, the search's first."""
    sweep = load_sweep(sweep_dir)
    mixing = any(o.get("metric", "").startswith("mixing") for o in sweep.objectives)
    rows = [_run_row("search", t, sweep.params, mixing) for t in sweep.trials + sweep.lost]
    rows += [_run_row("confirm", t, sweep.params, False) for t in sweep.confirm]
    return rows


def _run_row(stage: str, trial: Trial, params: list[str], needs_mixing: bool) -> SmokeRow:
    shown = trial.params.get("run", trial.params)  # a confirmation run's parameters sit under "run"
    # The choices, not the drawn numbers (the ranking above shows those): a failure's cause.
    what = " ".join(f"{k}={shown[k]}" for k in [*params, "seed"] if k in shown and not isinstance(shown[k], float))
    epochs = [int(m["epoch"]) for m in trial.history]
    restarts = _starts(trial.path) - 1
    last = trial.last
    facts = f"epochs {epochs or '-'}, restarts {max(restarts, 0)}"
    if "heldout_val_acc" in last:
        facts += f", heldout_val_acc {last['heldout_val_acc']:.3f}"
    if _finite(last.get("mixing")):
        facts += f", mixing {last['mixing']:.3f}"
    return SmokeRow(stage, trial.trial_id, f"{facts} | {what}",
                    _run_problem(trial, epochs, restarts, needs_mixing))


def _run_problem(trial: Trial, epochs: list[int], restarts: int, needs_mixing: bool) -> str | None:
    if trial.status not in PASSING:
        problem = f"{trial.status}: {trial.error or 'no error recorded'}"
        if "FaultDrill" in problem:
            problem += (" (its restarts did not resume from the drill's checkpoint: does the space's "
                        "failures: allow a restart?)")
        return problem
    if epochs != list(range(1, len(epochs) + 1)):
        return f"metrics.jsonl holds epochs {epochs}, not 1..n once each"
    drill = trial.config.get("fault_drill_epoch")
    if drill is not None and epochs and epochs[-1] > drill and restarts < 1:
        return f"got past its fault drill at epoch {drill} without a restart: the drill did not fire"
    if needs_mixing and not _finite(trial.last.get("mixing")):
        return f"no mixing score at epoch {epochs[-1] if epochs else '-'}: {trial.last.get('mixing_note', 'none reported')}"
    return None


def _starts(run_dir: Path) -> int:
    """How many times the run started: its process (one worker) or its worker group (several)."""
    processes = fileio.read_jsonl(run_dir / sweep_files.PROCESSES_FILE)
    return len(processes) or len(fileio.read_jsonl(run_dir / run_files.LEDGER_FILE))


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def format_smoke_table(rows: list[SmokeRow]) -> str:
    """The table, then one line: how many rows passed, and which failed."""
    width = max(len(r.name) for r in rows) if rows else 0
    rows = sorted(rows, key=lambda r: r.ok)  # failures first: the eye finds them without scrolling
    lines = [f"{'ok' if r.ok else 'FAILED':6} {r.stage:8} {r.name:{width}}  {r.what}"
             + ("" if r.ok else f"\n{'':16}{'':{width}}  -> {r.problem}") for r in rows]
    failed = [r for r in rows if not r.ok]
    lines.append(f"smoke: {len(rows) - len(failed)} of {len(rows)} passed"
                 + (f"; FAILED: {', '.join(f'{r.stage} {r.name}' for r in failed)}" if failed else ""))
    return "\n".join(lines) + "\n"
