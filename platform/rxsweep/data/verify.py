"""`rxsweep verify SHARDS`: every shard against the manifest that describes it, before a cluster
trains on them.

manifest.json records, for every shard, its file, its sha256 and its row count. A damaged shard
(a bit flipped in an image page, a file cut short by a copy, one left out) keeps an intact Parquet
footer often enough that nothing else notices before trials error. Checked per shard: the file
exists; its bytes hash to the recorded sha256; its row count is the recorded one; its image column
is rxsweep's, of the manifest's shape; and the image column of a sample of its row groups (the
first, the last and up to ``sample`` more, seeded) decodes to that shape. A path or a URI.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from rxsweep import locations
from rxsweep.data.image_column import shape_of, to_numpy
from rxsweep.data.ingest import MANIFEST


@dataclass(frozen=True)
class ShardCheck:
    file: str  # as the manifest names it
    rows: int
    problem: str | None = None  # None: the shard is what the manifest says

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_shards(shards_dir: str, sample: int = 4, seed: int = 0) -> list[ShardCheck]:
    """One ShardCheck a shard the manifest lists. ValueError / FileNotFoundError naming the file
    when the manifest itself is missing or unreadable."""
    root = locations.normalize(shards_dir)
    manifest_file = locations.join(root, MANIFEST)
    if not locations.exists(manifest_file):
        raise FileNotFoundError(f"{manifest_file} not found: {root} is not a completed ingest")
    manifest = locations.read_json(manifest_file)
    try:
        shards, channels, size = manifest["shards"], manifest["n_channels"], manifest["image_size"]
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{manifest_file}: not an rxsweep manifest (no {exc})") from None
    rng = np.random.default_rng(seed)
    return [_check(root, shard, (int(channels), int(size), int(size)), sample, rng) for shard in shards]


def _check(root: str, shard: dict, shape: tuple[int, int, int], sample: int, rng) -> ShardCheck:
    name, rows = shard["file"], int(shard["rows"])
    location = locations.join(root, name)
    if not locations.exists(location):
        return ShardCheck(name, rows, "missing")
    digest = _sha256(location)
    if digest != shard["sha256"]:
        return ShardCheck(name, rows, f"sha256 {digest[:12]}... is not the manifest's {shard['sha256'][:12]}...")
    try:
        parquet = locations.parquet_file(location)
        if parquet.metadata.num_rows != rows:
            return ShardCheck(name, rows, f"{parquet.metadata.num_rows} rows, the manifest says {rows}")
        field = parquet.schema_arrow.field("image")
        if tuple(shape_of(field)) != shape:
            return ShardCheck(name, rows, f"images of shape {shape_of(field)}, the manifest says {shape}")
        groups = parquet.num_row_groups
        picked = sorted({0, groups - 1, *rng.choice(groups, size=min(sample, groups), replace=False).tolist()})
        for group in picked:
            images = to_numpy(parquet.read_row_group(group, columns=["image"]).column("image"), shape)
            if images.shape[1:] != shape:
                return ShardCheck(name, rows, f"row group {group} decodes to {images.shape[1:]}, not {shape}")
    except Exception as exc:  # whatever pyarrow says about a damaged file is this shard's problem
        return ShardCheck(name, rows, f"unreadable: {type(exc).__name__}: {exc}")
    return ShardCheck(name, rows)


def _sha256(location: str) -> str:
    filesystem, path = locations.filesystem(location)
    digest = hashlib.sha256()
    with filesystem.open_input_stream(path) as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def format_checks(checks: list[ShardCheck]) -> str:
    """The table (failures first), then one line: how many shards passed, and which failed."""
    lines = [f"{'ok' if c.ok else 'BAD':4} {c.file}  {c.rows} rows" + ("" if c.ok else f"  -> {c.problem}")
             for c in sorted(checks, key=lambda c: c.ok)]
    bad = [c.file for c in checks if not c.ok]
    lines.append(f"verify: {len(checks) - len(bad)} of {len(checks)} shards match the manifest"
                 + (f"; BAD: {', '.join(bad)}" if bad else ""))
    return "\n".join(lines) + "\n"
