"""A folder at a URI, worked on in a local staging copy: what a sweep at ``--storage s3://...`` does.

rxsweep writes its records with plain file operations (atomic renames, appended JSON lines, a
SQLite study, torch checkpoints), none of which an object store offers. So each process that
writes into a sweep at a URI works in a staging folder on its own node and mirrors it, the way
Ray Train stages checkpoints: the sweep driver mirrors the sweep folder, each trial its own trial
folder (pulled when it starts, so a trial retried on another node resumes its checkpoints; pushed
after every epoch, before Tune hears of it).

A mirror copies only files that changed since it last synced them (size and modification time,
kept in the staging folder's SYNC_STATE). A push deletes at the URI only files this node's
processes removed themselves through :func:`remove` (recorded in DELETED), never a file only
because it is missing from the staging folder: a pruned checkpoint disappears at the URI, while a
staging folder emptied by hand, a tmp cleaner or a full disk costs nothing there (the next pull
brings the files back), and files other processes put there are never touched. A pull refuses a
key that would land outside the staging folder (`..`, an absolute key, a symlink in the way).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Iterable

from rxsweep import fileio, locations

#: The staging root on each node: RXSWEEP_STAGING, else ~/.cache/rxsweep/staging.
STAGING_ENV = "RXSWEEP_STAGING"
#: In a staging folder: the URI it mirrors, and what was last synced.
REMOTE_FILE = ".rxsweep-remote"
SYNC_STATE = ".rxsweep-sync.json"
#: In a staging folder: files removed through remove() since the last push, to delete at the URI.
DELETED = ".rxsweep-deleted.json"
OWN_FILES = (REMOTE_FILE, SYNC_STATE, DELETED)


def staging_dir(uri: str) -> Path:
    """This node's staging folder of ``uri``: the same on every call, one a URI."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    return staging_root() / f"{locations.name(uri) or 'root'}-{digest}"


class Mirror:
    """``uri`` and its staging folder ``local``. ``skip``: path prefixes (relative, '/'-separated)
    that this mirror leaves alone on both sides (e.g. Ray Tune's folder, which Ray writes itself)."""

    def __init__(self, uri: str, local: str | Path | None = None, skip: Iterable[str] = ()) -> None:
        self.uri = locations.normalize(uri)
        self.local = Path(local) if local is not None else staging_dir(self.uri)
        self.skip = tuple(p.rstrip("/") + "/" for p in skip)
        self.local.mkdir(parents=True, exist_ok=True)
        self._fs, self._root = locations.filesystem(self.uri)

    @classmethod
    def of(cls, local: str | Path, skip: Iterable[str] = ()) -> "Mirror | None":
        """The mirror whose staging folder is ``local``; None for a folder that is not one."""
        marker = Path(local) / REMOTE_FILE
        return cls(marker.read_text().strip(), local, skip) if marker.is_file() else None

    # ------------------------------------------------------------------------------- the syncs
    def pull(self) -> int:
        """Bring what changed at the URI since the last sync into the staging folder; returns the
        files copied. A change made here and not pushed yet stays (the next push sends it)."""
        state, remote = self._state(), self._remote_files()
        copied = 0
        for rel, signature in remote.items():
            known = state.get(rel)
            if known and known["remote"] == signature:
                continue
            target = self._inside(rel)
            with fileio.atomic_path(target) as tmp:
                self._copy(self._fs, f"{self._root}/{rel}", _local_fs(), str(tmp))
            state[rel] = {"remote": signature, "local": _signature(target)}
            copied += 1
        for rel in [r for r in state if r not in remote]:  # deleted at the URI since it was synced
            (self.local / rel).unlink(missing_ok=True)
            _remove_empty_parents(self.local / rel, self.local)
            del state[rel]
        self._save(state)
        return copied

    def push(self) -> int:
        """Copy what changed in the staging folder to the URI; returns the files copied.

        Files go in the order they were last written (modification time), so a push cut short
        leaves at the URI what a writer killed at that moment would have left: a checkpoint's files
        before the metrics line that names its epoch, its last-written file last."""
        state, local = self._state(), self._local_files()
        copied = 0
        for rel, signature in sorted(local.items(), key=lambda item: (item[1][1], item[0])):
            known = state.get(rel)
            if known and known["local"] == signature:
                continue
            remote = f"{self._root}/{rel}"
            self._fs.create_dir(remote.rsplit("/", 1)[0], recursive=True)
            self._upload(self.local / rel, remote)
            state[rel] = {"local": signature, "remote": _remote_signature(self._fs.get_file_info(remote))}
            copied += 1
        removed = set(fileio.read_json(self.local / DELETED) or [])
        for rel in [r for r in state if r not in local]:
            if rel in removed:  # removed here on purpose (remove()) since it was synced
                self._fs.delete_file(f"{self._root}/{rel}")
                self._remove_empty_remote_parents(rel)
            del state[rel]  # else lost here: kept at the URI, and the next pull brings it back
        self._save(state)
        fileio.write_text(self.local / DELETED, "[]")
        return copied

    # ------------------------------------------------------------------------------- internals
    def _inside(self, rel: str) -> Path:
        """Where key ``rel`` goes in the staging folder; a ValueError when that is outside it."""
        pure = PurePosixPath(rel)
        target = self.local / rel
        if pure.is_absolute() or ".." in pure.parts or "\\" in rel or not target.resolve().is_relative_to(
                self.local.resolve()):
            raise ValueError(f"{self.uri}: refusing to pull key {rel!r}: it would land outside the staging folder "
                             f"{self.local}")
        return target

    def _skipped(self, rel: str) -> bool:
        name = rel.rsplit("/", 1)[-1]
        return (rel in OWN_FILES or rel.startswith(self.skip) or name.endswith(fileio.TMP_SUFFIX)
                or any(part.startswith(".partial-") for part in rel.split("/")))

    def _remote_files(self) -> dict[str, list]:
        from pyarrow import fs

        selector = fs.FileSelector(self._root, recursive=True, allow_not_found=True)
        files = {}
        for info in self._fs.get_file_info(selector):
            if info.type == fs.FileType.File:
                rel = info.path[len(self._root):].lstrip("/")
                if not self._skipped(rel):
                    files[rel] = _remote_signature(info)
        return files

    def _local_files(self) -> dict[str, list]:
        files = {}
        for path in self.local.rglob("*"):
            rel = path.relative_to(self.local).as_posix()
            if path.is_file() and not self._skipped(rel):
                files[rel] = _signature(path)
        return files

    def _remove_empty_remote_parents(self, rel: str) -> None:
        from pyarrow import fs

        parts = rel.split("/")[:-1]
        while parts:
            folder = f"{self._root}/{'/'.join(parts)}"
            if self._fs.get_file_info(fs.FileSelector(folder, allow_not_found=True)):
                return
            self._fs.delete_dir(folder)  # object stores have no folders: a no-op there
            parts.pop()

    def _upload(self, path: Path, remote: str) -> None:
        """One file to the URI, whole or not at all: an object store creates an object when its
        upload completes; on a mounted filesystem (file://) the copy goes to a temporary name first."""
        from pyarrow import fs

        if not isinstance(self._fs, fs.LocalFileSystem):
            self._copy(_local_fs(), str(path), self._fs, remote)
            return
        partial = f"{remote}.{os.getpid()}{fileio.TMP_SUFFIX}"
        self._copy(_local_fs(), str(path), self._fs, partial)
        self._fs.move(partial, remote)
        # A push killed mid-file left its partial (NAME.PID.tmp, never read: _skipped). One
        # process at a time writes a folder's file, so once NAME is whole its partials are litter
        # (bench/chaos.py found 1-3 MB ones beside checkpoints).
        for stale in Path(remote).parent.glob(f"{Path(remote).name}.*{fileio.TMP_SUFFIX}"):
            stale.unlink(missing_ok=True)

    @staticmethod
    def _copy(source_fs, source: str, destination_fs, destination: str) -> None:
        from pyarrow import fs

        fs.copy_files(source, destination, source_filesystem=source_fs, destination_filesystem=destination_fs)

    def _state(self) -> dict:
        return fileio.read_json(self.local / SYNC_STATE) or {}

    def _save(self, state: dict) -> None:
        fileio.write_text(self.local / SYNC_STATE, json.dumps(state, sort_keys=True))
        fileio.write_text(self.local / REMOTE_FILE, self.uri + "\n")


def staging_root() -> Path:
    """This node's staging root: RXSWEEP_STAGING, else ~/.cache/rxsweep/staging."""
    return Path(os.environ.get(STAGING_ENV) or Path.home() / ".cache" / "rxsweep" / "staging").expanduser().resolve()


def clean_staging(root: str | Path | None = None, idle_s: float = 600.0) -> list[tuple[Path, int, str | None]]:
    """Remove the staging folders under ``root`` (default: staging_root()) whose every file is at
    its URI as it is here: pushed, and unchanged there since. A folder with a file not pushed, one
    changed at the URI, or a file written in the last ``idle_s`` seconds (a sweep may be running
    in it) is kept. Returns (folder, bytes, why kept or None when removed), one a staging folder."""
    import time

    out = []
    for folder in sorted(Path(root or staging_root()).glob("*/")):
        mirror = Mirror.of(folder)
        if mirror is None:
            continue
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        out.append((folder, size, _kept_because(mirror, time.time() - idle_s)))
        if out[-1][2] is None:
            shutil.rmtree(folder)
    return out


def _kept_because(mirror: Mirror, idle_since: float) -> str | None:
    state, local = mirror._state(), mirror._local_files()
    if any(p.stat().st_mtime > idle_since for p in mirror.local.rglob("*") if p.is_file()):
        return "written recently (a sweep may be running in it)"
    unpushed = [rel for rel, signature in local.items() if state.get(rel, {}).get("local") != signature]
    if unpushed:
        return f"{len(unpushed)} file(s) not pushed, e.g. {unpushed[0]}"
    remote = mirror._remote_files()
    changed = [rel for rel in local if remote.get(rel) != state[rel]["remote"]]
    if changed:
        return f"{len(changed)} file(s) differ at {mirror.uri}, e.g. {changed[0]}"
    return None


def remove(path: str | Path) -> None:
    """Remove a file or folder of a run or sweep folder. In a staging folder its files are
    recorded first, so the next push deletes them at the URI too (see the module doc)."""
    path = Path(path)
    root = next((p for p in (path, *path.parents) if (p / REMOTE_FILE).is_file()), None)
    if root is not None and path.exists():
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        removed = set(fileio.read_json(root / DELETED) or []) | {p.relative_to(root).as_posix() for p in files}
        fileio.write_text(root / DELETED, json.dumps(sorted(removed)))
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _signature(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _remote_signature(info) -> list:
    return [info.size, info.mtime_ns]


def _local_fs():
    from pyarrow import fs

    return fs.LocalFileSystem()


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove the folders above ``path`` up to ``root`` that are now empty (a checkpoint folder
    whose files were deleted is gone, not left as an empty checkpoint)."""
    for folder in path.parents:
        if folder == root or root not in folder.parents:
            return
        try:
            folder.rmdir()
        except OSError:  # not empty (or already gone)
            return
