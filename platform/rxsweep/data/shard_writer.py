"""Worker side of ingest: decode one shard's sites and write it as a Parquet file, atomically.

A shard is a slice of one plate. Its Parquet file holds the site-table columns and `image`, a uint8
image [C, H, W] a site, as one fixed-size binary value (image_column.py says why and how to read it). Next to it, `<shard>.done.json` is written last: it lists what was written
and what was quarantined (and why) and the shard's channel sums for the statistics. A shard without
its marker did not finish and is redone on resume.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rxsweep.data.image_column import encode, image_field
from rxsweep.data.images import BadSite, decode_site
from rxsweep import fileio

#: Site-table columns carried into the shards (image paths are replaced by the image itself).
SHARD_COLUMNS = [
    "site_id", "well_id", "experiment", "plate", "well", "site", "cell_type", "well_type",
    "sirna", "label", "split_group", "source", "batch",
]
#: lz4, because reading is what a GPU node's CPUs spend their time on. Measured here on `small`
#: preset shards (512 x 512 x 6, one pyarrow thread): zstd level 1 read 305-320 sites a CPU-second
#: at 0.82 MB a site on disk, lz4 518 at 1.26 MB, uncompressed 902 at 1.57 MB. A training stream
#: needs >= 250 sites a core after its own copies; zstd left it ~190, lz4 clears it, for ~1.5x
#: the disk (synthetic noise compresses worse than real, mostly dark, microscopy).
PARQUET_COMPRESSION = "lz4"
#: Columns written without dictionary encoding and statistics. Dictionary encoding tries every
#: column first; for images it only wastes a decode (the first ~2.5 images of each row group went
#: to a dictionary page before Parquet gave up on it), and min/max of 1.5 MB values cost ~1 ms a
#: site to write and are useless to a reader.
IMAGE_COLUMNS = {"image"}
#: Bytes of pixels per row group (at most ROW_GROUP_MAX_SITES sites). A row group is the smallest
#: piece a reader can decompress, so it is the unit a training stream interleaves: a streamed
#: worker holds whole row groups, and a batch mixes as many plates as the row groups it holds. At
#: 512 x 512 x 6 (1.5 MiB a site) 8 MiB is 5 sites, so a buffer of 1 GiB holds ~136 row groups
#: (64-site groups held 10), and a group still decompresses at full speed.
ROW_GROUP_BYTES = 8 << 20
ROW_GROUP_MAX_SITES = 64


def row_group_sites(site_bytes: int) -> int:
    """Sites a row group holds for images of ``site_bytes`` bytes."""
    return max(1, min(ROW_GROUP_MAX_SITES, ROW_GROUP_BYTES // max(1, site_bytes)))


def marker_path(shard_file: Path) -> Path:
    return shard_file.with_name(shard_file.name.replace(".parquet", ".done.json"))


def write_shard(sites: list[dict], shard_file: Path, root: str, native_size: int, image_size: int | None) -> dict:
    """Decode `sites` (site-table rows) and write `shard_file` and its marker; returns the marker."""
    images, kept, quarantined = [], [], []
    for row in sites:
        lo = row.get("intensity_lo")  # 16-bit TIFFs: the plate's (lo, hi) a channel (tiff_images.py)
        scaling = None if lo is None else (list(lo), list(row["intensity_hi"]))
        decoded = decode_site(list(row["image_paths"]), root, native_size, image_size, scaling)
        if isinstance(decoded, BadSite):
            quarantined.append({"site_id": row["site_id"], "path": decoded.path, "reason": decoded.reason})
            continue
        images.append(decoded)
        kept.append(row)
    sums = _channel_sums(images, [r["well_type"] != "treatment" for r in kept])
    if kept:
        _write_parquet(kept, np.stack(images), shard_file)
    marker = {
        "experiment": sites[0]["experiment"],
        "plate": int(sites[0]["plate"]),
        "shard": shard_file.name if kept else None,
        "sha256": _sha256(shard_file) if kept else None,
        "written": [r["site_id"] for r in kept],
        "quarantined": quarantined,
        **sums,
    }
    fileio.write_text(marker_path(shard_file), json.dumps(marker))
    return marker


def _write_parquet(rows: list[dict], images: np.ndarray, shard_file: Path) -> None:
    columns = {c: [r[c] for r in rows] for c in SHARD_COLUMNS}
    table = pa.table({
        **{c: pa.array(v, type=pa.int64() if c in ("plate", "site", "label") else pa.string())
           for c, v in columns.items()},
    })
    table = table.append_column(image_field(images.shape[1:]), encode(images))
    with fileio.atomic_path(shard_file) as tmp:  # a reader never sees half a shard
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=row_group_sites(images[0].nbytes),
                       use_dictionary=[c for c in table.column_names if c not in IMAGE_COLUMNS],
                       write_statistics=[c for c in table.column_names if c not in IMAGE_COLUMNS],
                       data_page_size=ROW_GROUP_BYTES)


def _channel_sums(images: list[np.ndarray], is_control: list[bool]) -> dict:
    """Per-channel pixel sums and sums of squares, over all sites and over control wells only.

    Integer sums (not means) so shards of one plate or experiment combine exactly, in any order.
    From each channel's histogram of its 256 values: exact, and no wide copy of the pixels (an
    int64 copy and einsum cost ~4x the histogram here; they were a third of ingest's time).
    """
    values = np.arange(256, dtype=np.int64)
    histograms = [np.stack([np.bincount(channel, minlength=256) for channel in image.reshape(image.shape[0], -1)])
                  for image in images]  # one [C, 256] an image, shared by both subsets
    out = {}
    for subset, mask in (("all", [True] * len(images)), ("controls", is_control)):
        chosen = [i for i, keep in enumerate(mask) if keep]
        if not chosen:
            out[subset] = None
            continue
        counts = np.sum([histograms[i] for i in chosen], axis=0, dtype=np.int64)
        out[subset] = {
            "n_sites": len(chosen),
            "n_pixels": int(len(chosen) * images[0].shape[1] * images[0].shape[2]),
            "sum": (counts @ values).tolist(),
            "sumsq": (counts @ (values * values)).tolist(),
        }
    return {"sums": out}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
