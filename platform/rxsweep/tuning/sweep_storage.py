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
from rxsweep.mirror import Mirror
from rxsweep.tuning import sweep_files

#: Folders Ray Tune writes at the sweep's location itself (the search's and the confirmation's).
TUNE_FOLDERS = (sweep_files.TUNE_DIR, f"{sweep_files.CONFIRM_DIR}/{sweep_files.TUNE_DIR}")


@dataclass(frozen=True)
class SweepStorage:
    location: str  # where trials and Ray Tune write: the folder's path, or its URI
    local: Path  # where the sweep driver reads and writes: the same folder, or its staging copy
    mirror: Mirror | None = None  # the whole sweep folder's, at a URI

    @classmethod
    def open(cls, storage: str | Path, name: str) -> "SweepStorage":
        location = locations.join(locations.normalize(storage), name)
        if not locations.is_uri(location):
            return cls(location, Path(location))
        mirror = Mirror(location, skip=TUNE_FOLDERS)
        return cls(location, mirror.local, mirror)

    def sub(self, folder: str) -> "SweepStorage":
        """A folder inside this one (the confirmation runs'), mirrored with it."""
        return SweepStorage(locations.join(self.location, folder), self.local / folder, self.mirror)

    def pull(self) -> None:
        if self.mirror is not None:
            self.mirror.pull()

    def push(self) -> None:
        if self.mirror is not None:
            self.mirror.push()


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
