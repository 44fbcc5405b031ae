"""What a sweep says on the terminal while it runs: a line per phase (data, search, confirmation,
verdict, report) and per trial event (started, an epoch with its held-out validation accuracy,
completed, stopped, failed), and on a terminal a bar for a phase of known length (the search's
trials, the confirmation runs).

The command that runs a sweep makes a :class:`SweepProgress` current (:func:`using`); the sweep
(rxsweep.tuning.sweep) says its phases through :func:`say` and :func:`phase`, and the trials'
events come from a Ray Tune callback in the sweep driver (rxsweep.tuning.trial_progress), which
finds the current SweepProgress here. With none current (a library call, a benchmark,
``--smoke``), :func:`say` prints plain lines on stderr as before, and the callback says nothing.
No Ray here: the CLI imports this before Ray starts.
"""

from __future__ import annotations

import contextlib
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

from rxsweep import fileio
from rxsweep.tuning import sweep_files

_CURRENT: "SweepProgress | None" = None
#: Statuses of a trial that ended (status.json): what a resumed phase has done already.
ENDED = ("completed", "stopped", "error")


class SweepProgress:
    """Lines on ``console`` (a rich Console; None: silent) and, when ``bars`` (default: on a
    terminal), a progress bar below them while a counted phase runs."""

    def __init__(self, console=None, bars: bool | None = None) -> None:
        self.console = console
        self.bars = bool(console is not None and (console.is_terminal if bars is None else bars))
        self._bar = None  # the rich Progress of the counted phase
        self._count: dict | None = None  # name, done, total, unit, outcomes of the counted phase

    def say(self, text: str, crop: bool = False) -> None:
        """One line, wrapped at the console's width between words, never inside one (a path stays
        whole, to be copied, even when longer than the width); or cut there with '…' (``crop``)."""
        if self.console is None:
            return
        from rich.text import Text

        if crop:
            self.console.print(Text(text), no_wrap=True, overflow="ellipsis")
            return
        for line in textwrap.wrap(text, self.console.width, subsequent_indent="    ", break_long_words=False,
                                  break_on_hyphens=False) or [""]:
            self.console.print(Text(line), soft_wrap=True)

    @contextlib.contextmanager
    def phase(self, name: str, detail: str = "", total: int | None = None, unit: str = "trials",
              done: int = 0) -> Iterator["SweepProgress"]:
        """Say that phase ``name`` starts (and ``detail``), then how long it took; a phase with a
        ``total`` counts its trials (:meth:`count`) from ``done``."""
        self.say(f"{name}: {detail}" if detail else f"{name} ...")
        start = time.monotonic()
        if total:
            self._count = {"name": name, "done": done, "total": total, "unit": unit, "outcomes": {}}
            self._start_bar()
        try:
            yield self
        except BaseException:
            self._stop_bar()
            self.say(f"{name}: stopped after {duration(time.monotonic() - start)}")
            raise
        self._stop_bar()
        outcomes = (self._count or {}).get("outcomes") or {}
        self._count = None
        told = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
        self.say(f"{name}: done in {duration(time.monotonic() - start)}" + (f" ({told})" if told else ""))

    def count(self, outcome: str) -> str:
        """One more trial of the counted phase ended with ``outcome``; '[search 3/6]' (or '')."""
        if self._count is None:
            return ""
        self._count["done"] += 1
        self._count["outcomes"][outcome] = self._count["outcomes"].get(outcome, 0) + 1
        if self._bar is not None:
            self._bar.update(self._bar.task_ids[0], completed=self._count["done"])
        return f"[{self._count['name']} {self._count['done']}/{self._count['total']}]"

    def _start_bar(self) -> None:
        if not self.bars:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=40), MofNCompleteColumn(),
                             TextColumn(self._count["unit"]), TimeElapsedColumn(), console=self.console,
                             # rich would otherwise put its proxies in sys.stdout and sys.stderr,
                             # and what Tune prints would reach the terminal through them
                             transient=True, redirect_stdout=False, redirect_stderr=False)
        self._bar.add_task(self._count["name"], total=self._count["total"], completed=self._count["done"])
        self._bar.start()

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextlib.contextmanager
def using(progress: SweepProgress) -> Iterator[SweepProgress]:
    """Make ``progress`` the one :func:`say`, :func:`phase` and TrialProgress use, while entered."""
    from rxsweep.console import saying_through

    global _CURRENT
    before, _CURRENT = _CURRENT, progress
    try:
        with saying_through(progress.say):
            yield progress
    finally:
        _CURRENT = before


@contextlib.contextmanager
def terminal(log: str | Path | None, header: str = "") -> Iterator[SweepProgress]:
    """The terminal of a sweep command: with a ``log``, everything the process prints (Ray, Ray
    Tune, Ray Data, Optuna) is appended to that file (rxsweep.console.DriverLog) and the current
    SweepProgress, with bars on a terminal, is what the terminal shows; Ray is shut down before the
    terminal is given back, so that nothing of it prints after. Without one (--verbose), Ray's
    output stays on the terminal and the progress lines go between it, without bars."""
    from rxsweep.console import DriverLog, make_console

    if log is None:
        with using(SweepProgress(make_console(sys.stderr), bars=False)) as progress:
            yield progress
        return
    with DriverLog(log, header) as driver, using(SweepProgress(make_console(driver.stderr))) as progress:
        progress.say(f"Ray's and Ray Tune's own output: {log} (--verbose: here)")
        try:
            yield progress
        finally:
            _shutdown_ray()


def _shutdown_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def current() -> SweepProgress | None:
    return _CURRENT


def say(echo: bool, message: str) -> None:
    """A line of the sweep: through the current SweepProgress, else on stderr when ``echo``."""
    if _CURRENT is not None:
        _CURRENT.say(message)
    elif echo:
        print(message, file=sys.stderr, flush=True)


def phase(name: str, detail: str = "", total: int | None = None, unit: str = "trials", done: int = 0):
    """The current SweepProgress's phase (SweepProgress.phase), or nothing said."""
    if _CURRENT is None:
        return contextlib.nullcontext()
    return _CURRENT.phase(name, detail, total=total, unit=unit, done=done)


def ended_trials(folder) -> int:
    """Trials under FOLDER/trials whose status.json says they ended (a resumed phase's head start)."""
    return sum((fileio.read_json(status) or {}).get("status") in ENDED
               for status in (Path(folder) / sweep_files.TRIALS_DIR).glob(f"*/{sweep_files.STATUS_FILE}"))


#: Parameters a trial's method label already tells.
LABEL_KEYS = ("domain_label", "adversary", "resampling", "seed")


def method_label(values: dict) -> str:
    """'ERM', 'DANN-plate', 'CDANN-experiment', with ' + AR' for adaptive resampling."""
    domain = values.get("domain_label", "none")
    label = "ERM" if domain in (None, "none") else f"{str(values.get('adversary', 'dann')).upper()}-{domain}"
    return label + (" + AR" if values.get("resampling") == "adaptive" else "")


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '1 h 02 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
