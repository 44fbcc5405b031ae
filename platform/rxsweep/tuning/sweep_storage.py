"""Where a sweep folder lives: a local or mounted path, or a URI (``--storage s3://bucket/rxsweep``).

At a URI, the sweep driver keeps the sweep folder in a staging folder on its node and mirrors it
(rxsweep.mirror): pulled when the sweep starts (a resumed sweep finds its study, its trials'
records and checkpoints), its own records (sweep.json, optuna.db, the trials' status.json) pushed
as trials start and end, everything pulled back once Tune returns (the trials pushed their own
folders) and pushed at the end. Ray Tune writes its experiment folder at the URI itself (Ray
accepts the same URIs as storage_path), so no mirror touches ``tune/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rxsweep import locations
from rxsweep.mirror import Mirror, staging_dir
from rxsweep.tuning import sweep_files

#: Folders Ray Tune writes at the sweep's location itself (the search's and the confirmation's).
TUNE_FOLDERS = (sweep_files.TUNE_DIR, f"{sweep_files.CONFIRM_DIR}/{sweep_files.TUNE_DIR}")


@dataclass(frozen=True)
class SweepStorage:
    """A sweep folder (``sub``: a folder inside it, e.g. the confirmation runs'). Only strings: it
    is pickled with Tune's callbacks, and a driver that resumes the sweep on another machine
    resolves its own staging folder (``local``) there, not the first driver's."""
    root: str  # the sweep folder: a path or a URI
    sub: str = ""

    @classmethod
    def open(cls, storage: str | Path, name: str) -> "SweepStorage":
        return cls(locations.join(locations.normalize(storage), name))

    @property
    def location(self) -> str:
        """Where trials and Ray Tune write: the folder's path, or its URI."""
        return locations.join(self.root, self.sub) if self.sub else self.root

    @property
    def local(self) -> Path:
        """Where the sweep driver reads and writes: the folder, or this node's staging copy."""
        base = staging_dir(self.root) if locations.is_uri(self.root) else Path(self.root)
        return base / self.sub if self.sub else base

    def __fspath__(self) -> str:  # the driver's callbacks open files under it as under a path
        return str(self.local)

    def folder(self, name: str) -> "SweepStorage":
        """A folder inside this one (the confirmation runs'), mirrored with it."""
        return SweepStorage(self.root, name)

    def pull(self) -> None:
        if locations.is_uri(self.root):
            self._mirror().pull()

    def push(self) -> None:
        if locations.is_uri(self.root):
            self._mirror().push()

    def _mirror(self) -> Mirror:
        return Mirror(self.root, skip=TUNE_FOLDERS)


def push_sweep(local: str | Path) -> None:
    """Push a sweep folder the driver staged (its report, written after the sweep) to its URI;
    nothing for a sweep folder that is not a staging copy."""
    mirror = Mirror.of(local, skip=TUNE_FOLDERS)
    if mirror is not None:
        mirror.push()


def local_copy(sweep: str | Path) -> Path:
    """A sweep folder to read: ``sweep`` itself, or (a URI) its staging copy, pulled first."""
    if not locations.is_uri(sweep):
        return Path(sweep)
    mirror = Mirror(locations.normalize(sweep), skip=TUNE_FOLDERS)
    mirror.pull()
    return mirror.local
