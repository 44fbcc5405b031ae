"""Tune's own failures said as what they are. When something in Tune's loop fails (the searcher
writing its Optuna study, Tune saving its state), Tune raises a TuneError whose message is the
traceback as text: the cause (the sweep folder refused a write, the disk is full) is in its last
lines, under Optuna's "exceeding max length" guess. A user needs the file and the cause."""

from __future__ import annotations

import re
from pathlib import Path

from rxsweep.tuning import sweep_files

_SQLITE = re.compile(r"sqlite3\.OperationalError: (.+)")
_ERRNO = re.compile(r"^(?:[\w.]+\.)?\w*Error: \[Errno (\d+)\] (.+)$", re.MULTILINE)


def fit(tuner, sweep_dir: Path):
    """``tuner.fit()``; a failure of the sweep folder's files under Tune is re-raised as an
    OSError naming the file and the cause (the TuneError it came in is its __cause__)."""
    try:
        return tuner.fit()
    except Exception as exc:
        said = said_as_os_error(str(exc), sweep_dir)
        if said is None:
            raise
        raise said from exc


def said_as_os_error(text: str, sweep_dir: Path) -> OSError | None:
    """The OSError a Tune failure's text stands for, or None when it is about something else."""
    sqlite = _SQLITE.findall(text)
    if sqlite:
        return OSError(f"{sweep_dir / sweep_files.OPTUNA_DB}: the search's Optuna study could not be written "
                       f"(SQLite: {sqlite[-1].strip()}); the sweep folder must stay writable, with free space, "
                       "while the sweep runs")
    errno = _ERRNO.findall(text)
    if errno:
        number, message = errno[-1]
        return OSError(int(number), f"{message} (in Tune's loop, writing the sweep in {sweep_dir})")
    return None
