"""What every `rxsweep` command that takes --storage / --data shares: the two locations checked and
tried before any work, the one line an error becomes (its path and stage), and the hint that
--resume continues a sweep that stopped."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def checked_locations(args: argparse.Namespace) -> tuple[str, str | None]:
    """--storage and --data: both checked (location()) before either is touched, then tried (this
    process may write the storage and read the data: rxsweep.locations.check_access)."""
    from rxsweep import locations

    storage = location("--storage", args.storage)
    data = None if args.data is None else location("--data", args.data)
    locations.check_access(storage, "--storage", write=True)
    if data is not None:
        locations.check_access(data, "--data", write=False)
    return storage, data


def location(option: str, value: str) -> str:
    """A --storage or --data value, checked and absolute (rxsweep.locations.normalize). A relative
    path is refused inside a Ray job: it names a folder in Ray's copy of the working directory,
    which differs on every node and which Ray's runtime-env cache may delete. Outside a job it is
    resolved once here and said."""
    from rxsweep import locations
    from rxsweep.cluster import in_ray_job

    location = locations.normalize(value)
    if locations.is_uri(value) or Path(value).expanduser().is_absolute():
        return location
    if in_ray_job():
        raise ValueError(f"{option} {value}: a relative path inside a Ray job is a folder in Ray's copy of the working "
                         "directory, a different one on every node, which Ray may delete; pass a path every node "
                         f"sees ({option} /shared/results) or a URI ({option} s3://bucket/rxsweep)")
    print(f"{option}: {location}", file=sys.stderr, flush=True)
    return location


def say_how_to_resume(sweep: str) -> None:
    """After a sweep stopped on an error: where it is and that --resume continues it (when it
    started and did not finish)."""
    from rxsweep import locations
    from rxsweep.tuning import sweep_files

    try:
        record = locations.read_json(locations.join(sweep, sweep_files.SWEEP_FILE))
    except (OSError, ValueError):
        return
    if not record.get("finished"):
        print(f"rxsweep sweep: the sweep in {sweep} stopped before it finished; the same command with --resume "
              "continues it (finished trials are kept, running ones resume from their checkpoints)", file=sys.stderr)


def describe_error(exc: BaseException) -> str:
    """The error's message with the path it is about and the stage it stopped (rxsweep.stages):
    an OSError raised without its filename (e.g. os.getcwd() in a folder removed under the
    process) printed a bare "[Errno 2] No such file or directory"."""
    from rxsweep.stages import stage_of

    text = str(exc)
    if isinstance(exc, OSError):
        for name in (exc.filename, exc.filename2):
            if name is not None and str(name) not in text:
                text += f": {name}"
        if exc.filename is None:
            try:
                os.getcwd()
            except FileNotFoundError:
                text += " (this process's working directory was removed; start it from an existing folder)"
    if stage_of(exc) is not None:
        text += f" [stage: {stage_of(exc)}]"
    return text
