"""A worker's training sites streamed straight from the shards: bounded memory, a new order every
epoch, batches that mix plates, and few cores a GPU.

Used when a run does not materialise its splits (``materialize: false``, e.g. full-size RxRx1,
whose ~197 GB of pixels fit no object store). Why not Ray Data here: in Ray 2.60
``randomize_block_order`` is an all-to-all step (it gathers every block reference before it emits
one), so each epoch read the whole split into the object store before its first batch, in the same
block order every epoch; and its blocks crossed the object store and two more copies before torch
saw them (93 uint8 sites/s a core at 512², against 300-440 for pyarrow's decompression alone).

What this does instead, in the Train worker's own process:

* The unit is a shard row group (one plate's sites, ~8 MiB: shard_writer.ROW_GROUP_BYTES). An
  epoch visits the worker's row groups in a permutation seeded by (seed, epoch, rank): the same
  triple gives the same order, so a resumed run replays its epoch.
* ``threads`` reader threads decompress row groups up to two a thread ahead of use (pyarrow
  releases the GIL while it decompresses); each group's images stay a zero-copy view of Arrow's
  buffer.
* Groups enter a pool (weighted_batches) until the groups it holds fill ``buffer_bytes``; each
  batch then draws its rows at random from every group in the pool, so a batch mixes as many
  plates and experiments as the pool holds groups. Rows are copied once, into the batch. A group
  leaves the pool with its last row. The worker holds about ``buffer_bytes`` + 2 groups a reader
  thread of images: that, not the split, bounds its memory. What the pool holds depends on the
  order alone, never on threads or timing, so the same (seed, epoch, rank) gives the same batches.

Nothing here touches Ray's object store.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from rxsweep import locations
from rxsweep.data.errors import read_row_group
from rxsweep.data.image_column import to_numpy
from rxsweep.data.stream import TREATMENT, ShardIndex
from rxsweep.data.weighted_batches import weighted_batches

log = logging.getLogger(__name__)

#: The id columns a batch carries besides the image (stream.BATCH_COLUMNS), from the index.
ID_COLUMNS = ["label", "experiment_id", "plate_id", "cell_type_id", "is_treatment", "site_index"]
#: Fewer row groups than this in the buffer and batches mix few plates: say so.
FEW_GROUPS = 32


@dataclass(frozen=True)
class RowGroup:
    """One shard row group that holds sites of the stream: where, and which of its rows."""
    path: str
    group: int
    rows: np.ndarray  # positions within the group, ascending
    site_index: np.ndarray  # the same rows' index.table rows


class ShardStream:
    """The training sites ``sites`` (rows of ``index.table``) of one worker, read from the shards."""

    def __init__(self, index: ShardIndex, sites: np.ndarray, buffer_bytes: int, threads: int = 1):
        if buffer_bytes <= 0 or threads < 1:
            raise ValueError(f"buffer_bytes must be > 0 and threads >= 1, got {buffer_bytes}, {threads}")
        table = index.table.loc[np.sort(np.asarray(sites))]
        if table.empty:
            raise ValueError("a shard stream needs at least one site")
        self.shape = index.image_shape
        self.site_bytes = int(np.prod(self.shape))
        self.buffer_bytes, self.threads = int(buffer_bytes), int(threads)
        self.site_ids = index.table["site_id"].to_numpy()
        self.ids = _id_columns(index)
        self.groups = _row_groups(index.root, table)
        held = self.buffer_bytes // max(self.site_bytes * max(len(g.rows) for g in self.groups), 1)
        if held < min(FEW_GROUPS, len(self.groups)):
            log.warning("the stream buffer (%d MiB) holds %d row groups of these shards: batches will "
                        "mix few plates; raise stream_buffer_mb, or ingest again (rxsweep writes "
                        "~8 MiB row groups)", self.buffer_bytes >> 20, held)
        self.peak_bytes = 0  # most image bytes held at once (pool + read ahead), for the benchmarks

    def order(self, seed: int, epoch: int, rank: int = 0) -> np.ndarray:
        """The epoch's row-group order: a permutation seeded by (seed, epoch, rank)."""
        return np.random.default_rng([seed, epoch, rank, 300]).permutation(len(self.groups))

    def blocks(self, order: np.ndarray, held: "_Budget") -> Iterator[dict[str, np.ndarray]]:
        """Row groups in ``order``, each as a dict of column arrays (image: uint8 [n, C, H, W]),
        decompressed by the reader threads up to 2 groups a thread ahead of use. ``held`` counts
        the groups handed out until their consumer lets go of them."""
        todo = deque(order.tolist())
        ahead: deque = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="rxsweep-shards") as pool:
            try:
                while todo or ahead:
                    while todo and len(ahead) < 2 * self.threads:
                        group = self.groups[todo.popleft()]
                        ahead.append((pool.submit(self._read, group), self._bytes(group)))
                    self.peak_bytes = max(self.peak_bytes, held.used + sum(size for _, size in ahead))
                    future, size = ahead.popleft()
                    block = future.result()
                    held.take(size)
                    yield _Held(block, held, size)
            finally:
                for future, _ in ahead:
                    future.cancel()

    def batches(self, batch_size: int, seed: int, epoch: int, rank: int = 0, counts: np.ndarray | None = None,
                drop_last: bool = True) -> Iterator[dict[str, np.ndarray]]:
        """The epoch's batches: every site once (or ``counts[site_index]`` times: adaptive
        resampling), each drawn at random from all the row groups the byte budget holds."""
        if counts is None:
            counts = np.ones(len(self.site_ids), dtype=np.int64)
        rng = np.random.default_rng([seed, epoch, rank, 301])
        held = _Budget(self.buffer_bytes)
        order = self.order(seed, epoch, rank)
        largest = max(self._bytes(g) for g in range(len(self.groups)))
        # No row threshold: the pool fills until the budget has no room for another group. What
        # the pool holds depends on the order alone (not on threads or timing): a rerun replays.
        yield from weighted_batches(self.blocks(order, held), counts, batch_size, len(self.site_ids) + 1, rng,
                                    drop_last=drop_last, room=lambda: held.room(largest))

    # ------------------------------------------------------------------ one row group
    def _bytes(self, group: int | RowGroup) -> int:
        group = self.groups[group] if isinstance(group, int) else group
        return len(group.rows) * self.site_bytes

    def _read(self, group: RowGroup) -> dict[str, np.ndarray]:
        table = read_row_group(locations.parquet_file(group.path), group.path, group.group,
                               columns=["site_id", "image"], use_threads=False)
        if len(group.rows) < table.num_rows:
            table = table.take(group.rows)
        if table["site_id"].to_pylist() != self.site_ids[group.site_index].tolist():
            raise ValueError(f"{group.path} no longer holds the sites its folder's index lists: the "
                             "shard folder changed after it was opened; open it again (or ingest again)")
        return {"image": to_numpy(table["image"], self.shape),
                **{name: values[group.site_index] for name, values in self.ids.items()}}


class _Budget:
    """Image bytes of the row groups handed to the pool: taken when a group is handed over, given
    back when the pool lets go of it (weighted_batches drops its last reference). Groups still
    being read ahead are not counted (the pool's decisions must not depend on threads)."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0
        self.lock = threading.Lock()

    def take(self, size: int) -> None:
        with self.lock:
            self.used += size

    def give(self, size: int) -> None:
        with self.lock:
            self.used -= size

    def room(self, size: int) -> bool:
        return self.used + size <= self.limit


class _Held(dict):
    """A block whose bytes go back to the budget when the pool lets go of it."""

    def __init__(self, block: dict, budget: _Budget, size: int):
        super().__init__(block)
        self._budget, self._size = budget, size

    def __del__(self):
        self._budget.give(self._size)


def _id_columns(index: ShardIndex) -> dict[str, np.ndarray]:
    """Each id column of a batch for every row of ``index.table`` (indexed by site_index)."""
    t = index.table
    experiments = {e: i for i, e in enumerate(index.experiments)}
    plates = {p: i for i, p in enumerate(index.plates)}
    cell_types = {c: i for i, c in enumerate(index.cell_types)}
    return {
        "label": t["label"].to_numpy(np.int64),
        "experiment_id": t["experiment"].map(experiments).to_numpy(np.int64),
        "plate_id": np.array([plates[(e, int(p))] for e, p in zip(t["experiment"], t["plate"])], np.int64),
        "cell_type_id": t["cell_type"].map(cell_types).to_numpy(np.int64),
        "is_treatment": (t["well_type"] == TREATMENT).to_numpy(np.int64),
        "site_index": t.index.to_numpy(np.int64),  # a RangeIndex (open_shards): row = position
    }


def _row_groups(root: str, table) -> list[RowGroup]:
    """The row groups of the shards that hold ``table``'s sites (one metadata read a shard)."""
    groups = []
    for shard, rows in table.groupby("shard", sort=True):
        meta = locations.parquet_file(locations.join(root, shard)).metadata
        bounds = np.cumsum([0] + [meta.row_group(g).num_rows for g in range(meta.num_row_groups)])
        positions, sites = rows["row"].to_numpy(), rows.index.to_numpy()
        which = np.searchsorted(bounds, positions, side="right") - 1
        for g in np.unique(which):
            mine = which == g
            groups.append(RowGroup(locations.join(root, shard), int(g), positions[mine] - bounds[g], sites[mine]))
    return groups
