"""Stream: ingest shards -> Ray Datasets of training batches, one per split.

Each dataset yields numeric columns only (what `iter_torch_batches` can move to a device):
    image          uint8 [C, H, W]     normalised and augmented later, on the device (transforms.py)
    label          int64               siRNA class id
    experiment_id  int64               index into ShardIndex.experiments (domain label 'experiment')
    plate_id       int64               index into ShardIndex.plates (domain label 'plate')
    cell_type_id   int64               index into ShardIndex.cell_types
    is_treatment   int64               1 for a treatment well, 0 for a control (positive or untreated):
                                       accuracy is scored on treatments; a domain loss may see controls only
    site_index     int64               row of ShardIndex.table, to name a site in embeddings
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from rxsweep import locations
from rxsweep.data.image_column import as_tensor
from rxsweep.data.ingest import FORMAT, MANIFEST
from rxsweep.data.rxrx1_facts import WELL_TYPES
from rxsweep.data.splits import SPLITS, SplitSpec, assign_splits
from rxsweep.data.transforms import AugmentSpec, BatchTransform

INDEX_COLUMNS = ["site_id", "well_id", "experiment", "plate", "well", "site", "cell_type", "well_type",
                 "sirna", "label", "split_group", "source", "batch"]
#: Columns shards written before they existed lack, and what they were for RxRx1 (its one source;
#: its experiment is its batch).
ADDED_COLUMNS = {"source": lambda table: "rxrx1", "batch": lambda table: table["experiment"]}
READ_COLUMNS = ["site_id", "experiment", "plate", "cell_type", "well_type", "label", "image"]
BATCH_COLUMNS = ["image", "label", "experiment_id", "plate_id", "cell_type_id", "is_treatment", "site_index"]
TREATMENT = WELL_TYPES[0]  # the well_type of a treatment well


@dataclass
class ShardIndex:
    """What is in a shard folder, without its images: the site table, the vocabularies, the stats."""
    root: str  # a location (rxsweep.locations): an absolute path or a URI
    manifest: dict
    table: pd.DataFrame  # INDEX_COLUMNS + shard (file name) + row (in it) + split (with_splits' copy)
    stats: pd.DataFrame
    experiments: list[str]
    plates: list[tuple[str, int]]
    cell_types: list[str]

    @property
    def n_channels(self) -> int:
        return int(self.manifest["n_channels"])

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """[C, H, W] of every site's uint8 image."""
        return self.n_channels, self.image_size, self.image_size

    @property
    def n_classes(self) -> int:
        """Class ids are the layout's own (Kaggle/WILDS: 0..1138), so the head has max id + 1 outputs."""
        return max(self.manifest["classes"]) + 1


def open_shards(shards_dir: str | Path) -> ShardIndex:
    """Read a completed ingest folder's index (fails clearly if the ingest is missing or unfinished).
    ``shards_dir``: a path or a URI (rxsweep.locations); the shards are read where they are."""
    root = locations.normalize(shards_dir)
    manifest_file = locations.join(root, MANIFEST)
    if not locations.exists(manifest_file):
        raise FileNotFoundError(
            f"{root} has no {MANIFEST}: not a completed ingest. Run `rxsweep ingest --data DIR --out {root}`"
        )
    manifest = locations.read_json(manifest_file)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{manifest_file}: format {manifest.get('format')!r}, this rxsweep reads {FORMAT!r}; "
                         "ingest the data again into a new folder")
    parts, columns = [], None
    for shard in manifest["shards"]:
        location = locations.join(root, shard["file"])
        if columns is None:  # one ingest writes one schema: read it from the first shard only
            present = set(locations.parquet_file(location).schema_arrow.names)
            columns = [c for c in INDEX_COLUMNS if c in present]
        part = locations.read_table(location, columns=columns).to_pandas()
        for column, fill in ADDED_COLUMNS.items():
            if column not in part:
                part[column] = fill(part)
        part["shard"] = shard["file"]
        part["row"] = np.arange(len(part))
        parts.append(part)
    if not parts:
        raise ValueError(f"{root}: the ingest wrote no sites (see quarantine.csv)")
    table = pd.concat(parts, ignore_index=True)
    plates = sorted({(e, int(p)) for e, p in zip(table["experiment"], table["plate"])})
    return ShardIndex(
        root=root, manifest=manifest, table=table,
        stats=locations.read_table(locations.join(root, "stats.parquet")).to_pandas(),
        experiments=sorted(table["experiment"].unique()), plates=plates,
        cell_types=sorted(table["cell_type"].unique()),
    )


def with_splits(index: ShardIndex, spec: SplitSpec) -> ShardIndex:
    """A copy of ``index`` whose table has the `split` column of ``spec`` (see splits.py).

    The split is a value: ``index`` itself is left as it was, so one opened index serves every
    run of a sweep, each with its own split."""
    table = index.table.copy()
    table["split"] = assign_splits(table, spec)
    return replace(index, table=table)


def split_dataset(index: ShardIndex, split: str, materialize: bool = False, sites: np.ndarray | None = None):
    """A Ray Dataset of one split's sites, read from just the shards (and row groups) that hold them.
    ``sites``: only these rows of ``index.table`` (site_index values) of the split, e.g. one Train
    worker's part of the training split."""
    import ray

    from rxsweep.data.shard_source import ShardDatasource  # imports Ray Data: only when reading

    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {list(SPLITS)}")
    if "split" not in index.table.columns:
        raise ValueError("call with_splits(index, spec) before split_dataset")
    chosen = index.table[index.table["split"] == split]
    if sites is not None:
        chosen = chosen[chosen.index.isin(sites)]
    if chosen.empty:
        raise ValueError(f"split {split!r} has no sites; check the split settings")
    parts = [(locations.join(index.root, shard), rows["row"].to_numpy(),
              {"site_index": rows.index.to_numpy(), "site_id": rows["site_id"].to_numpy()})
             for shard, rows in chosen.sort_values(["shard", "row"]).groupby("shard", sort=True)]
    # row_bytes only sizes Ray's blocks: the pixels plus a rough allowance for the id columns.
    row_bytes = int(np.prod(index.image_shape)) + 64
    source = ShardDatasource(parts, READ_COLUMNS, _Encoder(index), row_bytes=row_bytes)
    with _quiet_reads():
        dataset = ray.data.read_datasource(source)
    return dataset.materialize() if materialize else dataset


@contextlib.contextmanager
def _quiet_reads():
    """Plan a read without Ray Data's progress bars: training prints one line an epoch (Tune's
    table in a sweep), and bars from every split of every trial would flood the logs."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    before, ctx.enable_progress_bars = ctx.enable_progress_bars, False
    try:
        yield
    finally:
        ctx.enable_progress_bars = before


class _Encoder:
    """Turn the names of the rows read from a shard into integer ids (vectorised in Arrow), after
    checking that they are the sites the index expects there."""

    def __init__(self, index: ShardIndex):
        self.experiments = pa.array(index.experiments)
        self.plates = pa.array([f"{e}/{p}" for e, p in index.plates])
        self.cell_types = pa.array(index.cell_types)
        self.shape = index.image_shape

    def __call__(self, batch: pa.Table, expected: dict[str, np.ndarray]) -> pa.Table:
        if batch["site_id"].to_pylist() != expected["site_id"].tolist():
            raise ValueError("a shard no longer holds the sites its folder's index lists: the shard "
                             "folder changed after it was opened; open it again (or ingest again)")
        plate_key = pc.binary_join_element_wise(batch["experiment"], pc.cast(batch["plate"], pa.string()), "/")
        return pa.table({
            "image": as_tensor(batch["image"], self.shape),
            "label": batch["label"],
            "experiment_id": pc.cast(pc.index_in(batch["experiment"], value_set=self.experiments), pa.int64()),
            "plate_id": pc.cast(pc.index_in(plate_key, value_set=self.plates), pa.int64()),
            "cell_type_id": pc.cast(pc.index_in(batch["cell_type"], value_set=self.cell_types), pa.int64()),
            "is_treatment": pc.cast(pc.equal(batch["well_type"], TREATMENT), pa.int64()),
            "site_index": pa.array(expected["site_index"], type=pa.int64()),
        })


def batch_transform(index: ShardIndex, normalization: str, augment: AugmentSpec = AugmentSpec(),
                    device="cpu", seed: int = 0) -> BatchTransform:
    """The device-side transform that matches this index's vocabularies and statistics."""
    return BatchTransform(normalization, index.stats, index.experiments, index.plates, augment, device, seed)
