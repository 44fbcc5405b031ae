"""Where shards and sweeps live: a local (or mounted) path, or a URI of a filesystem pyarrow
opens (``s3://bucket/rxrx1``, ``gs://...``, ``file:///mnt/share/...``), as Ray's own storage_path.

A location is a plain string everywhere it travels (sweep.json, Tune's trial parameters, a
shard index): a resolved absolute path, or a URI without a trailing slash. Shards are read in
place through these helpers (no copy: a row group is a range read); a sweep folder at a URI is
written in a local staging folder and mirrored there (rxsweep.mirror).

Nothing here contacts a remote store until a file is opened or check_access() asks: normalize()
only parses a location.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

#: URI schemes of the filesystems pyarrow.fs.FileSystem.from_uri opens (what Ray accepts as a
#: storage_path); any other scheme is refused before work starts.
SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: A scheme-like prefix and a colon: `s3:/bucket` or `gs:bucket` is a mistyped URI, never a folder.
_MISTYPED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!//)")


def is_uri(location: str | Path) -> bool:
    return isinstance(location, str) and _SCHEME.match(location) is not None


def normalize(location: str | Path) -> str:
    """A local path made absolute, or a URI checked (known scheme, a path) without its trailing '/'.
    Raises ValueError naming what to change."""
    if not is_uri(location):
        mistyped = _MISTYPED.match(str(location))
        if mistyped:  # else `--storage s3:/bucket` became a folder named `s3:` and a sweep ran into it
            scheme = mistyped.group(1)
            raise ValueError(f"{location}: looks like a URI but is not one (a URI is {scheme}://bucket/path); "
                             f"a local folder whose name has a colon is written ./{location}")
        return str(Path(location).expanduser().resolve())
    scheme = _SCHEME.match(location).group(1).lower()
    if scheme not in SCHEMES:
        raise ValueError(f"{location}: unknown scheme {scheme}://; give a local or mounted path, or a URI "
                         f"of one of {', '.join(s + '://' for s in SCHEMES)}")
    parts = urlsplit(location)
    if scheme == "file" and parts.netloc not in ("", "localhost"):
        raise ValueError(f"{location}: a file:// URI names a path on this machine: file:///abs/path")
    if scheme != "file" and not parts.netloc:
        raise ValueError(f"{location}: name the bucket or host, e.g. {scheme}://my-bucket/rxsweep")
    if ".." in PurePosixPath(parts.path).parts:
        raise ValueError(f"{location}: '..' is not allowed in a URI's path")
    return location.rstrip("/")


def join(location: str | Path, *parts: str) -> str:
    """``location``/part/... for a path or a URI. Parts come from metadata (a manifest's shard
    files, trial ids): each must stay inside ``location``."""
    for part in parts:
        pure = PurePosixPath(part)
        if pure.is_absolute() or ".." in pure.parts or "\\" in part:
            raise ValueError(f"{part!r} leaves {location}: a relative path inside it is expected")
    if is_uri(location):
        return "/".join([str(location).rstrip("/"), *parts])
    return str(Path(location, *parts))


def name(location: str | Path) -> str:
    """The last component (a folder's name)."""
    return PurePosixPath(urlsplit(location).path if is_uri(location) else str(location)).name


def filesystem(location: str | Path):
    """(pyarrow filesystem, path in it). One filesystem object per scheme and bucket/host a process,
    so opening many shards does not resolve an S3 region or a GCS token each time."""
    from pyarrow import fs

    if not is_uri(location):
        return fs.LocalFileSystem(), str(Path(location).expanduser().resolve())
    parts = urlsplit(location)
    root_fs, root_path = _filesystem_of(parts.scheme.lower(), parts.netloc)
    # The root's path is "" or "/" (file://, hdfs://) or the bucket (s3://, gs://): the URI's path
    # goes after it.
    return root_fs, root_path.rstrip("/") + parts.path


@functools.lru_cache(maxsize=None)
def _filesystem_of(scheme: str, netloc: str):
    from pyarrow import fs

    return fs.FileSystem.from_uri(f"{scheme}://{netloc}/")


def exists(location: str | Path) -> bool:
    from pyarrow import fs

    filesystem_, path = filesystem(location)
    return filesystem_.get_file_info(path).type != fs.FileType.NotFound


#: Words in a filesystem's error that mean the credentials or the permissions said no.
_DENIED = ("ACCESS_DENIED", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "Permission denied", "Operation not permitted", "PERMISSION_DENIED", "Forbidden", "credentials", "Unauthenticated")


def check_access(location: str | Path, what: str, write: bool) -> None:
    """Fail now, in one line naming ``what`` (e.g. "--storage"), the location and what was refused,
    when this process cannot list ``location`` or (``write``) create a file in it: at a URI with
    wrong credentials, a missing bucket or no permission, the first write otherwise came after
    minutes of data preparation. Writing creates the folder and a probe file, then removes the probe."""
    filesystem_, path = filesystem(location)
    try:
        if write:
            filesystem_.create_dir(path, recursive=True)
            probe = f"{path.rstrip('/')}/.rxsweep-access-{os.getpid()}"
            with filesystem_.open_output_stream(probe) as out:
                out.write(b"rxsweep checks it may write here\n")
            filesystem_.delete_file(probe)
        else:
            filesystem_.get_file_info(path)
    except OSError as exc:
        action = "cannot write there" if write else "cannot read it"
        verb, hint = "write" if write else "read", ""
        if any(word in str(exc) for word in _DENIED):
            if is_uri(location) and not str(location).startswith("file:"):
                hint = ("; check the credentials this process sees (for s3:// AWS_ACCESS_KEY_ID/AWS_PROFILE or the "
                        f"node's role, for gs:// GOOGLE_APPLICATION_CREDENTIALS) and that they may {verb} there")
            else:
                hint = f"; check that this user ({_user()}) may {verb} there"
        raise OSError(f"{what} {location}: {action}: {exc}{hint}") from None


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def read_text(location: str | Path) -> str:
    filesystem_, path = filesystem(location)
    with filesystem_.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def read_json(location: str | Path):
    """The JSON document at ``location``; a ValueError naming it when it does not parse."""
    try:
        return json.loads(read_text(location))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{location}: not valid JSON ({exc})") from None


def parquet_file(location: str | Path):
    """A pyarrow ParquetFile of a local file or of an object at a URI (read by ranges)."""
    import pyarrow.parquet as pq

    if not is_uri(location):
        return pq.ParquetFile(location)
    filesystem_, path = filesystem(location)
    return pq.ParquetFile(filesystem_.open_input_file(path))


def read_table(location: str | Path, columns: list[str] | None = None):
    import pyarrow.parquet as pq

    filesystem_, path = filesystem(location)
    return pq.read_table(path, columns=columns, filesystem=filesystem_)
