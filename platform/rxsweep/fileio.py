"""Writing files so that a reader never sees half of one, and reading the small JSON files back.

Every rxsweep write that creates or replaces a file others read (shards, manifests, run and sweep
records, reports) goes through :func:`atomic_path`: the content goes to a temporary name in the
same folder, which is renamed over the target only once it is complete (a rename within one file
system is atomic). A writer killed midway leaves a ``*.tmp`` file, never a torn target; the
records a resume reads (:func:`write_text`: sweep.json, status.json, metrics.jsonl, manifests)
are also flushed to disk before their rename, so a machine that loses power keeps the old record
or the new one, and :func:`remove_stale_tmp` clears what killed writers left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from pathlib import Path
from typing import Iterator

TMP_SUFFIX = ".tmp"

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error remove it.
    The temporary name is unique per process and thread, so concurrent writers never share one.
    ``durable``: the content, then the rename, reach the disk before this returns (fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}{TMP_SUFFIX}")
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text(path: str | Path, text: str) -> None:
    """A small record, whole or not at all, on disk when this returns."""
    with atomic_path(path, durable=True) as tmp:
        tmp.write_text(text, encoding="utf-8")


#: A temporary file of atomic_path: NAME.PID.THREAD.tmp
_TMP_NAME = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)\.\d+" + re.escape(TMP_SUFFIX) + "$")


def remove_stale_tmp(folder: str | Path, older_than_s: float = 600.0) -> int:
    """Remove the temporary files of atomic_path under ``folder`` that killed writers left: whose
    process is not alive on this machine, untouched for ``older_than_s`` (a writer on another
    node of a shared folder finishes its file in seconds). Returns how many were removed."""
    removed = 0
    now = time.time()
    for tmp in Path(folder).rglob(f"*{TMP_SUFFIX}"):
        match = _TMP_NAME.match(tmp.name)
        try:
            if match and not _alive(int(match["pid"])) and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished or removed it meanwhile
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def json_safe(value):
    """``value`` with every non-finite float (NaN, inf) replaced by None, at any depth, so the
    JSON stays valid for every reader (Python's json writes NaN, which JSON does not allow)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: str | Path, payload: dict) -> None:
    """A JSON object, indented, keys sorted, non-finite floats as null, written atomically."""
    write_text(path, json.dumps(json_safe(payload), indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | Path) -> dict | None:
    """The JSON object in ``path``, or None when the file is missing or unreadable (a record not
    written yet reads the same as no record)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class JsonLines(list):
    """The objects of a JSON-lines file, oldest first; ``torn`` counts the torn last lines skipped."""
    torn: int = 0


def read_jsonl(path: str | Path) -> JsonLines:
    """A JSON-lines file written by appends (or rewritten whole): one JSON object a line, [] when
    the file is missing. A torn last line (a writer killed mid-write, or a read racing a write) is
    skipped and counted in ``torn``; any other unreadable line is a ValueError naming the file and
    the line."""
    path = Path(path)
    rows = JsonLines()
    if not path.is_file():
        return rows
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if number < len(lines):
                raise ValueError(f"{path}:{number}: not a JSON line: {line[:80]!r}") from None
            rows.torn += 1
            logger.warning("%s: skipped a torn last line (a write in progress or cut short)", path)
    return rows
