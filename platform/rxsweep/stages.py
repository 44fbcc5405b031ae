"""Which stage of a command an error stopped, said with the error: "No such file or directory:
/shared/x" is an answer only once the user knows whether the data, the search, the confirmation
runs or the report failed (and so whether --resume continues it)."""

from __future__ import annotations

import contextlib

_NOTE = "stage: "


@contextlib.contextmanager
def stage(name: str):
    """Run the block as stage ``name``: an exception leaving it carries the note "stage: NAME"
    (the innermost stage's, when stages nest)."""
    try:
        yield
    except Exception as exc:
        if stage_of(exc) is None:
            exc.add_note(_NOTE + name)
        raise


def stage_of(exc: BaseException) -> str | None:
    """The stage an exception stopped (stage()), or None."""
    return next((note[len(_NOTE):] for note in getattr(exc, "__notes__", ()) if note.startswith(_NOTE)), None)
