"""Adaptive resampling in the training loop: what each worker keeps between epochs, how it draws an
epoch, and what it reports.

Per epoch of a run with ``resampling: adaptive``:

1. draw: the epoch's training sites are drawn with replacement, as many as a plain epoch has, from
   this worker's own part of the training split (RunPlan.train_sites), by the current weights
   mixed with ``ar_mix`` of uniform; the draw is seeded by (seed, epoch, rank) (the caller's
   generator), so a resumed run replays it. During the ``ar_warmup_epochs`` there are no weights
   yet and the epoch is the plain one (each site once, as a run without AR).
2. train: every step hands the batch's site ids and embeddings to :meth:`collect` (the embedding
   the label head sees, from the training pass itself: no second pass over the data).
3. :meth:`end_epoch`: the embeddings are gathered from every worker into a memory of the last
   embedding of each training site, and the weights of the next epoch are computed from it
   (rxsweep.training.resampling). A site not drawn this epoch keeps its older embedding; a site
   never seen yet gets the mean weight (it is neither known to be rare nor common).

The memory and the weights are part of the checkpoint (:meth:`state` / :meth:`load`).
With ``ar_weights_from`` the weights are the file's, fixed, from the first epoch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from rxsweep.data.stream import TREATMENT
from rxsweep.data.weighted_batches import as_torch, weighted_batches
from rxsweep.training.config import TrainConfig
from rxsweep.training.evaluate import all_gather_objects, all_reduce
from rxsweep.training.plan import RunPlan
from rxsweep.training.resampling import mix_uniform, resampling_weights, weight_summary

#: Reported share of an epoch's draws that are control wells (positive controls and untreated).
CONTROLS_SHARE = "ar_share/controls"


class AdaptiveResampler:
    def __init__(self, cfg: TrainConfig, plan: RunPlan, rank: int, world: int) -> None:
        self.cfg = cfg
        self.sites = plan.train_sites()  # every training site (rows of the index table), ascending
        self.mine = np.searchsorted(self.sites, plan.train_sites(rank, world))  # positions of my part
        self.n_rows = len(plan.index.table)
        self.fixed = plan.ar_weights is not None
        self.weights: np.ndarray | None = plan.ar_weights  # over self.sites; None: plain sampling
        self.memory: np.ndarray | None = None  # [sites, D] last training embedding of each site
        self.seen = np.zeros(len(self.sites), dtype=bool)
        self._collected: list[tuple[np.ndarray, np.ndarray]] = []
        table = plan.index.table
        self.cell_types = list(plan.cell_types)
        self._site_type = np.searchsorted(self.cell_types, table["cell_type"].to_numpy())
        self._site_control = (table["well_type"] != TREATMENT).to_numpy()
        self.draws = np.zeros(len(self.cell_types) + 2)  # per cell type, controls, all: this epoch's

    # ----------------------------------------------------------------------------- drawing
    def counts(self, rng: np.random.Generator) -> np.ndarray:
        """The epoch's draw: copies of each site (indexed by site_index) of this worker's part."""
        p = self.weights[self.mine]
        p = mix_uniform(p / p.sum(), self.cfg.ar_mix)
        counts = np.zeros(self.n_rows, dtype=np.int64)
        counts[self.sites[self.mine]] = rng.multinomial(len(self.mine), p)  # p checked by mix_uniform
        return counts

    def batches(self, data, batch_size: int, buffer_rows: int, rng: np.random.Generator) -> Iterator[dict]:
        """This worker's batches of the epoch drawn by the current weights (torch tensors), from
        ``data`` (its Ray Data iterator over its own sites)."""
        counts = self.counts(rng)
        stream = data.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)
        yield from as_torch(weighted_batches(stream, counts, batch_size, buffer_rows, rng))

    @property
    def active(self) -> bool:
        """True when the current epoch is drawn by weights (after the warm-up, or from a file)."""
        return self.weights is not None

    # ----------------------------------------------------------------------------- training
    def collect(self, site_index: torch.Tensor, embedding: torch.Tensor) -> None:
        """Keep a step's site ids, embeddings (for the next weights) and what it drew (reported)."""
        rows = site_index.cpu().numpy()
        np.add.at(self.draws, self._site_type[rows], 1)
        self.draws[-2] += self._site_control[rows].sum()
        self.draws[-1] += len(rows)
        if not self.fixed:
            self._collected.append((rows, embedding.detach().float().cpu().numpy()))

    def end_epoch(self, epoch: int) -> dict[str, float]:
        """Gather this epoch's embeddings from every worker, compute the next epoch's weights (once
        the warm-up is over) and return the epoch's report (collective: every rank calls it)."""
        draws = all_reduce(torch.from_numpy(self.draws)).numpy()
        used = self.weights
        report = weight_summary(mix_uniform(used, self.cfg.ar_mix)) if used is not None else \
            {"ar_ess": 1.0, "ar_max_weight": 1.0}
        total = draws[-1] or float("nan")
        report.update({f"ar_share/{name}": float(draws[i] / total) for i, name in enumerate(self.cell_types)})
        report[CONTROLS_SHARE] = float(draws[-2] / total)
        self.draws[:] = 0
        if not self.fixed:
            self._remember(all_gather_objects(self._concat()))
            if epoch >= self.cfg.ar_warmup_epochs:
                self.weights = self._weights()
        return report

    def _concat(self) -> tuple[np.ndarray, np.ndarray]:
        rows = [r for r, _ in self._collected]
        vectors = [v for _, v in self._collected]
        self._collected = []
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(rows), np.concatenate(vectors)

    def _remember(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for rows, vectors in parts:  # in rank order, then step order: a site drawn twice keeps its last
            if not len(rows):
                continue
            if self.memory is None:
                self.memory = np.zeros((len(self.sites), vectors.shape[1]), dtype=np.float32)
            positions = np.searchsorted(self.sites, rows)
            self.memory[positions] = vectors
            self.seen[positions] = True

    def _weights(self) -> np.ndarray | None:
        n, seen = len(self.sites), self.seen
        if not seen.any():
            return None
        weights = np.full(n, 1.0 / n)  # unseen sites: the mean weight
        weights[seen] = resampling_weights(self.memory[seen], self.cfg.ar_bins, self.cfg.ar_smoothing) \
            * seen.sum() / n
        return weights

    # ----------------------------------------------------------------------------- checkpoint
    def state(self) -> dict:
        """weights_only-safe tensors of what draws the next epoch."""
        return {"sites": torch.from_numpy(self.sites),
                "weights": None if self.weights is None else torch.from_numpy(self.weights),
                "memory": None if self.memory is None else torch.from_numpy(self.memory),
                "seen": torch.from_numpy(self.seen)}

    def load(self, state: dict | None) -> None:
        if state is None:  # a checkpoint from before the warm-up ended holds no weights yet
            return
        if not np.array_equal(state["sites"].numpy(), self.sites):
            raise ValueError("the checkpoint's resampling state is for other training sites: the split changed")
        self.weights = None if state["weights"] is None else state["weights"].numpy().copy()
        self.memory = None if state["memory"] is None else state["memory"].numpy().copy()
        self.seen = state["seen"].numpy().copy()
