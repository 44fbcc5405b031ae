"""The terminal of a command that runs Ray: what it prints fits in WIDTH columns, and Ray's own
output goes to a log file.

A sweep driver hosts Ray's and Ray Tune's chatter: Ray's INFO log lines, the output of every Ray
worker (``log_to_driver``), Tune's per-trial boxes, Ray Data's progress, Optuna's warnings, and the
C++ core worker's own lines, written straight to file descriptor 2. :class:`DriverLog` sends all of
them to one file by pointing the process's file descriptors 1 and 2 at it (``dup2``): the only way
that also catches what C++ and child processes write. What rxsweep itself says goes to the
terminal through consoles opened on copies of the original descriptors (:attr:`DriverLog.stderr`),
and a line any layer of rxsweep says with :func:`say` (an ingest's progress) goes there too.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, TextIO

#: Columns a table or a progress line may use, on a wider terminal too; only lines that are a
#: path (the report, the sweep folder) may be longer, so that they can be copied whole.
WIDTH = 120


#: While a DriverLog is entered: the terminal's stderr; and while a command shows its own progress
#: there (rxsweep.tuning.progress), the function that says a line above its bar.
_TERMINAL: TextIO | None = None
_SINK: Callable[[str], None] | None = None


def say(message: str) -> None:
    """A line of rxsweep's own for the person at the terminal, on stderr, also while a DriverLog
    sends the process's output to its file."""
    if _SINK is not None:
        _SINK(message)
    else:
        print(message, file=_TERMINAL or sys.stderr, flush=True)


@contextlib.contextmanager
def saying_through(sink: Callable[[str], None]) -> Iterator[None]:
    """:func:`say` calls ``sink`` while entered (a progress display that owns the terminal)."""
    global _SINK
    before, _SINK = _SINK, sink
    try:
        yield
    finally:
        _SINK = before


def width(stream: TextIO | None = None) -> int:
    """WIDTH, or the terminal's width (COLUMNS, else the size of ``stream``'s own terminal: under a
    DriverLog, stdout's descriptor is the log) when ``stream`` is a narrower terminal."""
    stream = sys.stdout if stream is None else stream
    try:
        if stream.isatty():
            columns = os.environ.get("COLUMNS", "")
            n = int(columns) if columns.isdigit() else os.get_terminal_size(stream.fileno()).columns
            return min(WIDTH, n) if n > 0 else WIDTH  # a pseudo-terminal may say 0
    except (AttributeError, ValueError, OSError):
        pass
    return WIDTH


def make_console(stream: TextIO | None = None, columns: int | None = None):
    """A rich Console on ``stream`` (default: stdout) at most WIDTH columns wide; colours only on a
    terminal; rich's markup and highlighting off (text such as "[0.31, 0.42]" is data, not markup)."""
    from rich.console import Console

    stream = sys.stdout if stream is None else stream
    return Console(file=stream, width=columns or width(stream), markup=False, highlight=False, emoji=False,
                   soft_wrap=False)


def render(renderable, columns: int = WIDTH) -> str:
    """What make_console would print of ``renderable``, as plain text (no colours)."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=columns, markup=False, highlight=False, emoji=False, color_system=None,
            force_terminal=False).print(renderable)
    return buffer.getvalue()


class DriverLog:
    """While entered, everything this process writes to its stdout and stderr (and so what Ray,
    Tune, Optuna and their C++ parts print) is appended to ``path``; :attr:`stdout` and
    :attr:`stderr` still reach the terminal. Leaving restores both descriptors, also on an error,
    so the error's message and traceback are printed on the terminal as usual."""

    def __init__(self, path: str | Path, header: str = "") -> None:
        self.path = Path(path)
        self.header = header
        self.stdout: TextIO = sys.stdout
        self.stderr: TextIO = sys.stderr
        self._saved: list[int] = []
        self._terminal_before: TextIO | None = None

    def __enter__(self) -> "DriverLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        log = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(log, f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {self.header}\n".encode())
            self._saved = [os.dup(1), os.dup(2)]
            # Line-buffered text streams on copies of the terminal's descriptors: what rxsweep says.
            self.stdout = open(os.dup(self._saved[0]), "w", buffering=1, encoding=_encoding(sys.stdout),
                               errors="replace")
            self.stderr = open(os.dup(self._saved[1]), "w", buffering=1, encoding=_encoding(sys.stderr),
                               errors="replace")
            os.dup2(log, 1)
            os.dup2(log, 2)
        finally:
            os.close(log)
        global _TERMINAL
        self._terminal_before, _TERMINAL = _TERMINAL, self.stderr
        return self

    def __exit__(self, *exc) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()  # what Python buffered goes to the log, before the descriptors move back
            except (OSError, ValueError):
                pass
        for fd, saved in zip((1, 2), self._saved):
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = []
        global _TERMINAL
        _TERMINAL = self._terminal_before
        for stream in (self.stdout, self.stderr):
            stream.close()
        self.stdout, self.stderr = sys.stdout, sys.stderr


def _encoding(stream: TextIO) -> str:
    return getattr(stream, "encoding", None) or "utf-8"
