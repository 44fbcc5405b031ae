"""Batches of a drawn multiset of sites, streamed: each incoming site repeated as often as it was
drawn, then shuffled through a bounded buffer.

Adaptive resampling (rxsweep.training.resampling) draws an epoch's sites with replacement. Its
draw is a count a site (a multinomial); the stream is the ordinary one over the worker's own
sites (each site once, from Ray's object store or the shards), and :func:`weighted_batches` emits
each site it meets ``count`` times (0: skipped) into a shuffle pool of a few hundred rows and draws
batches from the pool. No copy of the epoch's images is ever made: the pool holds at most
``buffer_rows`` + one incoming batch, whatever the size of the split. A site drawn k times has its
copies spread over the next ~``buffer_rows`` rows, as a local shuffle buffer spreads its neighbours.

Everything is seeded by the caller's ``numpy.random.Generator``, so the same stream, counts and
generator give the same batches (a resumed run replays its epoch).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


class _Pool:
    """Rows waiting to be batched: column arrays with a fill level. A batch takes random rows and
    the pool's last rows move into their places, so a batch costs O(batch) copies."""

    def __init__(self) -> None:
        self.columns: dict[str, np.ndarray] = {}
        self.size = 0

    def add(self, batch: dict[str, np.ndarray], rows: np.ndarray) -> None:
        m = len(rows)
        for name, values in batch.items():
            column = self.columns.get(name)
            if column is None or len(column) < self.size + m:
                # a quarter to spare, not double: at 512 x 512 x 6 a pool row is 1.5 MB
                grown = np.empty((int(1.25 * (self.size + m)) + 1, *values.shape[1:]), dtype=values.dtype)
                if column is not None:
                    grown[:self.size] = column[:self.size]
                self.columns[name] = column = grown
            np.take(values, rows, axis=0, out=column[self.size:self.size + m])  # no temporary copy
        self.size += m

    def take(self, n: int, rng: np.random.Generator | None) -> dict[str, np.ndarray]:
        """``n`` rows: random ones, or the oldest ``n`` in order when ``rng`` is None."""
        if rng is None:
            out = {k: v[:n].copy() for k, v in self.columns.items()}
            for v in self.columns.values():
                v[:self.size - n] = v[n:self.size]
        else:
            picked = rng.choice(self.size, size=n, replace=False)
            out = {k: np.take(v, picked, axis=0) for k, v in self.columns.items()}
            last = self.size - n
            holes = np.sort(picked[picked < last])  # taken rows below the tail, to be refilled
            tail = np.setdiff1d(np.arange(last, self.size), picked, assume_unique=True)  # untaken tail rows
            for v in self.columns.values():
                for hole, row in zip(holes.tolist(), tail.tolist()):  # row by row: no temporary of the images
                    v[hole] = v[row]
        self.size -= n
        return out


def weighted_batches(batches: Iterable[dict[str, np.ndarray]], counts: np.ndarray, batch_size: int,
                     buffer_rows: int, rng: np.random.Generator) -> Iterator[dict[str, np.ndarray]]:
    """Full batches of ``batch_size`` rows of the multiset that ``counts`` draws from ``batches``.

    ``batches``: dicts of equal-length column arrays with a ``site_index`` column (the stream of
    the worker's own sites). ``counts[site_index]``: copies of that site to emit. ``buffer_rows``:
    rows the pool holds before it hands out a batch (0: no shuffle, rows leave in arrival order).
    A last partial batch is dropped, as the plain stream's ``drop_last`` does.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    shuffle = rng if buffer_rows > 0 else None
    pool = _Pool()
    for batch in batches:
        copies = np.asarray(counts)[np.asarray(batch["site_index"])]
        if copies.any():
            pool.add(batch, np.repeat(np.arange(len(copies)), copies))
        while pool.size >= max(buffer_rows, batch_size):
            yield pool.take(batch_size, shuffle)
    while pool.size >= batch_size:
        yield pool.take(batch_size, shuffle)
