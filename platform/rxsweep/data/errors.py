"""Errors the data layer raises for bad input, each naming what to change."""

from __future__ import annotations

from pathlib import Path

#: How many offending rows an error message lists before it says "and N more".
MAX_ROWS_IN_MESSAGE = 5


class SiteTableError(ValueError):
    """A metadata file cannot be turned into a site table (missing column, bad value, duplicate...)."""


def bad_rows_error(path: Path, column: str, rows: list[int], values: list, expected: str) -> SiteTableError:
    """Build an error that names the file, the rows (as CSV line numbers) and the column.

    `rows` are 0-based data-row indices; the message shows 1-based file lines (header = line 1) so a
    user can jump to them in an editor.
    """
    shown = [f"line {r + 2}: {v!r}" for r, v in zip(rows[:MAX_ROWS_IN_MESSAGE], values[:MAX_ROWS_IN_MESSAGE])]
    more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
    return SiteTableError(
        f"{path}: column {column!r} must be {expected}; bad values at " + "; ".join(shown) + more
    )


class ShardReadError(OSError):
    """A shard that cannot be read where the manifest says it is: named, with the check to run."""


def read_row_group(parquet, path: str, group: int, **kwargs):
    """``parquet.read_row_group(group, **kwargs)``; a damaged shard raises ShardReadError naming
    the shard, the row group and `rxsweep verify` on its folder (a trial that errored said only
    what pyarrow said, without the file)."""
    import pyarrow as pa

    try:
        return parquet.read_row_group(group, **kwargs)
    except (OSError, pa.ArrowException) as exc:
        folder = path.rsplit("/", 2)[0]  # SHARDS/shards/NAME.parquet -> SHARDS
        raise ShardReadError(f"{path}: row group {group} cannot be read ({exc}); check every shard with "
                             f"`rxsweep verify {folder}`") from exc
