"""Batches of a drawn multiset of sites, streamed: each incoming site repeated as often as it was
drawn, then shuffled through a bounded buffer.

Adaptive resampling (rxsweep.training.resampling) draws an epoch's sites with replacement. Its
draw is a count a site (a multinomial); the stream is the ordinary one over the worker's own
sites (each site once, from Ray's object store or the shards), and :func:`weighted_batches` emits
each site it meets ``count`` times (0: skipped) into a shuffle pool of a few hundred rows and draws
batches from the pool. No copy of the epoch's images is ever made: the pool holds references to
the incoming blocks that still have rows to emit (about ``buffer_rows`` rows), and a row's pixels
are copied once, into its batch. A site drawn k times has its
copies spread over the next ~``buffer_rows`` rows, as a local shuffle buffer spreads its neighbours.

Everything is seeded by the caller's ``numpy.random.Generator``, so the same stream, counts and
generator give the same batches (a resumed run replays its epoch).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np


class _Pool:
    """Rows waiting to be batched, as references: the incoming blocks themselves (never copied) and
    an entry (block, row) for each row to emit. A batch gathers its rows straight from the blocks,
    one copy a row, and a block is let go once none of its rows waits."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, np.ndarray]] = {}
        self.waiting: dict[int, int] = {}  # rows still to emit, a block
        self.block = np.empty(0, dtype=np.int64)  # entries, in arrival order
        self.row = np.empty(0, dtype=np.int64)
        self.added = 0

    @property
    def size(self) -> int:
        return len(self.block)

    def add(self, batch: dict[str, np.ndarray], rows: np.ndarray) -> None:
        key, self.added = self.added, self.added + 1
        self.blocks[key], self.waiting[key] = batch, len(rows)
        self.block = np.concatenate([self.block, np.full(len(rows), key)])
        self.row = np.concatenate([self.row, rows])

    def take(self, n: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """``n`` rows: random ones, or the oldest ``n`` in order when ``rng`` is None."""
        if rng is None:
            picked = np.arange(n)
        else:  # grouped by block (stable), so each block fills one slice of the batch
            picked = rng.choice(self.size, size=n, replace=False)
            picked = picked[np.argsort(self.block[picked], kind="stable")]
        block, row = self.block[picked], self.row[picked]
        out = self._gather(block, row)
        keep = np.ones(self.size, dtype=bool)
        keep[picked] = False
        self.block, self.row = self.block[keep], self.row[keep]
        for key, used in zip(*np.unique(block, return_counts=True)):
            self.waiting[key] -= int(used)
            if not self.waiting[key]:
                del self.waiting[key], self.blocks[key]  # its memory can go
        return out

    def _gather(self, block: np.ndarray, row: np.ndarray) -> dict[str, np.ndarray]:
        cuts = np.flatnonzero(np.diff(block)) + 1
        runs = list(zip([0, *cuts.tolist()], [*cuts.tolist(), len(block)]))
        first = self.blocks[int(block[0])]
        out = {}
        for name, values in first.items():
            column = out[name] = np.empty((len(block), *values.shape[1:]), dtype=values.dtype)
            for s, e in runs:
                np.take(self.blocks[int(block[s])][name], row[s:e], axis=0, out=column[s:e])
        return out


def weighted_batches(batches: Iterable[dict[str, np.ndarray]], counts: np.ndarray, batch_size: int,
                     buffer_rows: int, rng: np.random.Generator, drop_last: bool = True,
                     room: Callable[[], bool] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Full batches of ``batch_size`` rows of the multiset that ``counts`` draws from ``batches``.

    ``batches``: dicts of equal-length column arrays with a ``site_index`` column (the stream of
    the worker's own sites). ``counts[site_index]``: copies of that site to emit. ``buffer_rows``:
    rows the pool holds before it hands out a batch (0: no shuffle, rows leave in arrival order).
    A last partial batch is dropped, as the plain stream's ``drop_last`` does, unless ``drop_last``
    is False. Within a batch, rows of one incoming block are adjacent (a batch is a set to SGD).
    ``room``: when the source bounds memory itself (shard_stream: bytes), whether it can hand
    over another block now; the pool then also hands out batches whenever it cannot.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shuffle = rng if buffer_rows > 0 else None
    pool = _Pool()
    for batch in batches:
        copies = np.asarray(counts)[np.asarray(batch["site_index"])]
        if copies.any():
            pool.add(batch, np.repeat(np.arange(len(copies)), copies))
        del batch  # the pool holds what it needs: a spent block can be let go
        while pool.size >= batch_size and (pool.size >= buffer_rows or (room is not None and not room())):
            yield pool.take(batch_size, shuffle)
    while pool.size >= batch_size:
        yield pool.take(batch_size, shuffle)
    if pool.size and not drop_last:
        yield pool.take(pool.size, shuffle)


def as_torch(batches: Iterable[dict[str, np.ndarray]]) -> Iterator[dict]:
    """The same batches as torch tensors over the same memory (no copy)."""
    import torch

    for batch in batches:
        yield {name: torch.from_numpy(values) for name, values in batch.items()}
