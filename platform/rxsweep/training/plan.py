"""Preflight: everything about a run that can be checked before Ray or any worker starts.

:func:`preflight` opens the shard index (no images read), assigns the splits, and checks the config
against the data: channel count, crop size, normalisation statistics, non-empty splits, enough
domains for DANN, at least one step per epoch, the backbone and pretrained file. What it returns,
a :class:`RunPlan`, is all a worker needs besides the config: the index, the domain id mapping, the
step counts. Every failure is a :class:`ConfigError` that says what to change.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rxsweep.data.stream import ShardIndex, batch_transform, open_shards, with_splits
from rxsweep.models.registry import BACKBONES
from rxsweep.training.config import ConfigError, TrainConfig
from rxsweep.training.run_files import SPLIT_COLUMNS

#: Splits a run reads. 'val' = training-domain holdout; the two held-out splits are experiments the
#: model never trains on ('heldout_test' is reported only, never used to choose anything).
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("val", "heldout_val", "heldout_test")
EMBEDDING_SPLITS = ("heldout_val", "heldout_test")

#: Seed stream of the partition of the training sites among Train workers (RunPlan.train_sites).
PARTITION_STREAM = 7

_SPLIT_FIX = {
    "train": "hold out fewer experiments (n_val_per_cell_type / n_test_per_cell_type, n_val_sources / "
             "n_test_sources or the explicit lists)",
    "val": "raise holdout_fraction above 0",
    "heldout_val": "set n_val_per_cell_type >= 1, n_val_sources >= 1 or list val_experiments",
    "heldout_test": "set n_test_per_cell_type >= 1, n_test_sources >= 1 or list test_experiments",
}


def open_index(shards_dir: str | Path) -> ShardIndex:
    """open_shards, with its errors worded for the --data argument."""
    try:
        return open_shards(shards_dir)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"--data {shards_dir}: {e}") from None


@dataclass
class RunPlan:
    """What preflight learned; passed to every worker with the config."""
    index: ShardIndex  # with the `split` column
    in_channels: int
    input_size: int  # edge of the model input (after the crop)
    n_classes: int
    split_sizes: dict[str, int]
    domain_lut: list[int]  # stream id (experiment_id | plate_id) -> domain index; -1: not a training domain
    domain_names: list[str]
    steps_per_epoch: int  # per worker (every worker takes the same number of steps)
    total_steps: int  # steps_per_epoch x epochs: the denominator of training progress p
    backbone_kwargs: dict  # extra create_backbone arguments (ViT's img_size)
    split_seed: int = 0  # the config's split_seed: also seeds the workers' parts of the training split
    #: adaptive resampling from a file (ar_weights_from): a weight a training site, in the order of
    #: train_sites(); None: AR computes its weights from the run's own embeddings, or no AR
    ar_weights: np.ndarray | None = None

    @property
    def n_domains(self) -> int:
        return len(self.domain_names)

    @property
    def cell_types(self) -> list[str]:
        return list(self.index.cell_types)

    def class_weights(self) -> list[float]:
        """Inverse training frequency of each class, normalised so a training site weighs 1 on
        average (n / (K x n_c) over the K classes present; 1 for a class absent from training).
        RxRx1 puts every control on every plate: a positive control has 4x the training sites of
        a treatment on the tiny preset (and 4x on the real one), and unweighted, the controls win
        the loss while the treatments stay at chance."""
        labels = self.index.table.loc[self.index.table["split"] == TRAIN_SPLIT, "label"]
        counts = labels.value_counts()
        weights = [1.0] * self.n_classes
        for label, count in counts.items():
            weights[int(label)] = len(labels) / (len(counts) * count)
        return weights

    def train_sites(self, rank: int = 0, world: int = 1) -> np.ndarray:
        """The training sites (rows of ``index.table``, ascending) that Train worker ``rank`` of
        ``world`` trains on: all of them for one worker, else every world-th site of a permutation
        seeded by the split's seed (a run setting, so every trial of a sweep shares the parts and
        the datasets built from them). The parts are disjoint, their union is the training split,
        and their sizes differ by at most one site."""
        rows = self.index.table.index[self.index.table["split"] == TRAIN_SPLIT].to_numpy()
        if world == 1:
            return np.sort(rows)
        order = np.random.default_rng([PARTITION_STREAM, self.split_seed]).permutation(rows)
        return np.sort(order[rank::world])

    @property
    def splits(self) -> pd.DataFrame:
        """The run's split as a value: one row a site (rxsweep.training.run_files.SPLIT_COLUMNS),
        what every run writes to its folder as splits.parquet."""
        return self.index.table.loc[:, list(SPLIT_COLUMNS)]


def preflight(cfg: TrainConfig, shards_dir: str | Path, index: ShardIndex | None = None) -> RunPlan:
    """Check ``cfg`` against the shards in ``shards_dir``; raise ConfigError naming the fix.

    ``index``: the already opened shard index of ``shards_dir`` (a sweep checks many configs
    against one data set); it is not changed: the plan carries its own copy with ``cfg``'s split.
    """
    if index is None:
        index = open_index(shards_dir)

    channels = index.n_channels
    if cfg.in_channels is not None and cfg.in_channels != channels:
        raise ConfigError(
            f"in_channels={cfg.in_channels}, but the shards in {index.root} hold {channels}-channel "
            f"images; set in_channels: {channels} or remove it (null reads it from the shards)")
    if cfg.crop is not None and cfg.crop > index.image_size:
        raise ConfigError(f"crop={cfg.crop} is larger than the shards' {index.image_size}px images; "
                          f"set crop <= {index.image_size} or null")
    if cfg.pretrained_weights is not None and not Path(cfg.pretrained_weights).is_file():
        raise ConfigError(f"pretrained_weights {cfg.pretrained_weights!r} is not a file")
    if cfg.backbone not in BACKBONES:  # the config checks this too; a registry may change
        raise ConfigError(f"unknown backbone {cfg.backbone!r}; known: {BACKBONES.names()}")
    try:
        batch_transform(index, cfg.normalization, cfg.augment_spec())  # statistics present?
    except ValueError as e:
        raise ConfigError(f"normalization={cfg.normalization!r}: {e}") from None

    try:
        index = with_splits(index, cfg.split_spec())
    except ValueError as e:
        raise ConfigError(f"splits: {e}") from None
    sizes = index.table["split"].value_counts().to_dict()
    split_sizes = {s: int(sizes.get(s, 0)) for s in (TRAIN_SPLIT, *EVAL_SPLITS)}
    for split, n in split_sizes.items():
        if n == 0:
            raise ConfigError(f"split {split!r} has no sites with these settings; {_SPLIT_FIX[split]}")

    train = index.table[index.table["split"] == TRAIN_SPLIT]
    if cfg.domain_label in ("experiment", "batch", "source"):
        # A batch is an experiment (sites.py); a source holds whole experiments: the stream's
        # experiment id maps to the domain through the look-up table.
        column = "source" if cfg.domain_label == "source" else "experiment"
        names = sorted(train[column].unique())
        owner = index.table.groupby("experiment")[column].first()
        lut = [names.index(owner[e]) if owner[e] in names else -1 for e in index.experiments]
    elif cfg.domain_label == "plate":
        keys = sorted({(e, int(p)) for e, p in zip(train["experiment"], train["plate"])})
        names = [f"{e}/{p}" for e, p in keys]
        lut = [keys.index(k) if k in keys else -1 for k in index.plates]
    else:
        names, lut = [], []
    if cfg.adversarial and len(names) < 2:
        raise ConfigError(f"domain_label={cfg.domain_label!r} needs >= 2 training {cfg.domain_label}s, "
                          f"the training split has {names}; use domain_label: none (ERM) or train on more")

    per_worker = split_sizes[TRAIN_SPLIT] // cfg.num_workers
    steps = per_worker // cfg.batch_size
    if steps < 1:
        raise ConfigError(
            f"batch_size={cfg.batch_size} x num_workers={cfg.num_workers} is more than the "
            f"{split_sizes[TRAIN_SPLIT]} training sites: no full batch per epoch; lower batch_size")
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)

    input_size = cfg.crop or index.image_size
    kwargs = {}
    if "img_size" in inspect.signature(BACKBONES.get(cfg.backbone)).parameters:
        kwargs["img_size"] = input_size  # ViT: position grid for this input size
    plan = RunPlan(index=index, in_channels=channels, input_size=input_size, n_classes=index.n_classes,
                   split_sizes=split_sizes, domain_lut=lut, domain_names=names, steps_per_epoch=steps,
                   total_steps=steps * cfg.epochs, backbone_kwargs=kwargs, split_seed=cfg.split_seed)
    if cfg.ar_weights_from is not None:
        from rxsweep.training.ar_weights_file import read_ar_weights

        plan.ar_weights = read_ar_weights(cfg.ar_weights_from, index.table["site_id"],
                                          index.table.loc[plan.train_sites(), "site_id"], cfg.ar_bins,
                                          cfg.ar_smoothing)
    return plan
