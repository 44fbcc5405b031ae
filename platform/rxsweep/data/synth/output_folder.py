"""What both synthetic generators (RxRx1, and the JUMP-like Cell Painting world) do around their
rendering: check the common arguments, claim the output folder, run plate tasks in parallel.

A generation's identity (its arguments and generator version) is written to a partial marker when
it starts and into truth.json (beside the data root) when it ends, so a folder is only ever written
by one identity: a finished one is returned as is, an interrupted one completed, anything else
refused.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from rxsweep.data.synth.writers import truth_file, write_json

PARTIAL_FILE = ".synth-partial.json"  # identity of a generation in progress; removed when done


def check_seed_and_workers(seed, workers) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int, got {workers!r}")


def read_identity(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))["identity"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def claim(out: Path, root: Path, identity: dict, what: str) -> bool:
    """Make sure this generation may write into ``out`` (whose data root is ``root``); True if it
    already holds this exact, finished dataset. ``what`` names the kind of dataset in errors."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        finished = read_identity(truth_file(root))
        previous = finished or read_identity(root / PARTIAL_FILE)
        if previous is None or previous.get("kind") != identity.get("kind"):
            raise ValueError(f"out {str(out)!r} is not empty and holds no {what}; choose an empty or new directory")
        if previous != identity:
            differ = sorted(k for k in identity if previous.get(k) != identity[k])
            raise ValueError(
                f"out {str(out)!r} holds a {what} generated with other parameters (differing: {differ}); "
                "overwriting would mix two datasets' files. Delete it or choose another directory")
        if finished is not None:
            return True
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / PARTIAL_FILE, {"identity": identity})
    return False


def finish(root: Path, truth: dict) -> None:
    """truth.json last (its presence means the dataset is complete), then the partial marker goes."""
    write_json(truth_file(root), truth)
    (root / PARTIAL_FILE).unlink()


def run_tasks(run: Callable, tasks: list, workers: int) -> list:
    """``run(task)`` for every task, in-process for one worker, else in a process pool; results in
    task order, with a progress line on a terminal.

    The pool is joblib's loky: its workers import what the tasks need and never re-run the
    caller's __main__, so a plain script or a notebook can call a generator without an
    `if __name__ == "__main__":` guard (multiprocessing's spawn and forkserver re-import the main
    script in every worker). Workers are fresh processes, not forks: callers such as Ray drivers
    may have threads running. A worker that dies raises an error here rather than hanging.
    """
    if workers == 1 or len(tasks) == 1:
        return _counted((run(task) for task in tasks), len(tasks))
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=min(workers, len(tasks)), backend="loky", return_as="generator")
    return _counted(parallel(delayed(run)(task) for task in tasks), len(tasks))


def _counted(results: Iterable, total: int) -> list:
    out = []
    for done, result in enumerate(results, 1):
        out.append(result)
        if sys.stderr.isatty():  # a progress line for people, nothing in logs or tests
            end = "\n" if done == total else ""
            print(f"\rrxsweep synth: {done}/{total} plates", end=end, file=sys.stderr, flush=True)
    return out
