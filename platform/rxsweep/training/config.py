"""TrainConfig: every setting of one training run, declared once, with its default and range.

This is the single place a hyperparameter is declared (DomainBed's ``hparams_registry`` habit):
each field carries metadata made by :func:`hparam` (searchable: help text + natural search domain)
or :func:`setting` (not searched: seeds, resources, run length, splits). The sweep derives its
search spaces from :func:`hparam_specs`; nothing else repeats a default.

Overrides (``from_dict``, ``with_overrides``, ``from_yaml``) reject unknown keys (suggesting the
closest known one) and wrong types (naming the expected type); ``validate`` checks ranges and
choices. Everything raises :class:`ConfigError`, a ``ValueError`` whose message says what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


from rxsweep import yamlio
from rxsweep.data.splits import SplitSpec
from rxsweep.data.transforms import NORMALIZATIONS, AugmentSpec
from rxsweep.models import ADVERSARIES, DOMAIN_LABELS, list_backbones, list_schedules

#: Which training sites the domain loss sees (see TrainConfig.domain_sites).
DOMAIN_SITES = ("all", "controls")
#: How each epoch's training sites are drawn (see TrainConfig.resampling).
RESAMPLING = ("none", "adaptive")


class ConfigError(ValueError):
    """A training config that cannot run; the message names the field and the fix."""


@dataclass(frozen=True)
class Spec:
    """Metadata of one TrainConfig field."""
    help: str
    searchable: bool  # True: a hyperparameter the sweep may search; False: a run setting
    choices: Optional[tuple] = None  # the finite domain, if there is one
    low: Optional[float] = None  # numeric domain (inclusive); also the validation range
    high: Optional[float] = None
    log: bool = False  # search low..high on a log scale
    minimum: Optional[float] = None  # legal range, when wider than the search domain
    maximum: Optional[float] = None
    #: ((field, allowed values), ...): the value only matters when every named field holds one of
    #: its allowed values (e.g. λ settings need a domain head); a sweep samples it only then.
    when: tuple[tuple[str, tuple], ...] = ()

    @property
    def legal(self) -> tuple[Optional[float], Optional[float]]:
        return (self.low if self.minimum is None else self.minimum,
                self.high if self.maximum is None else self.maximum)


def hparam(default, help: str, *, choices=None, low=None, high=None, log=False, minimum=None,
           maximum=None, when: dict | None = None):
    """A searchable hyperparameter: default, what it means, its natural search domain (choices, or
    low..high, maybe log-scaled). The legal range is low..high unless minimum/maximum widen it.
    ``when``: {field: allowed values} under which the value is used at all (see Spec.when)."""
    conditions = tuple((k, tuple(v)) for k, v in (when or {}).items())
    spec = Spec(help, True, _tuple(choices), low, high, log, minimum, maximum, conditions)
    return field(default=default, metadata={"spec": spec})


#: Conditions shared by several hyperparameters.
DANN_ONLY = {"domain_label": ("experiment", "plate", "batch", "source")}
AR_ONLY = {"resampling": ("adaptive",)}


def setting(default, help: str, *, choices=None, low=None, high=None):
    """A run setting that is validated but never searched (seeds, resources, splits, length)."""
    return field(default=default, metadata={"spec": Spec(help, False, _tuple(choices), low, high)})


def _tuple(choices):
    return None if choices is None else tuple(choices)


@dataclass(frozen=True)
class TrainConfig:
    # ----------------------------------------------------------------------------------- model
    backbone: str = hparam("cnn-small", "feature extractor from the rxsweep.models registry",
                           choices=list_backbones())
    pretrained_weights: Optional[str] = setting(
        None, "local state_dict file for the backbone (first conv adapted to the channel count)")
    embedding_dim: Optional[int] = hparam(
        256, "size of the Linear-BN-ReLU bottleneck between backbone and heads; null = backbone "
        "features (this is the embedding the analysis scores)", choices=(None, 128, 256, 512), low=1)
    # ------------------------------------------------------------------------------------ DANN
    domain_label: str = hparam(
        "experiment", "what the domain head predicts: experiment | plate | batch (= experiment, by its "
        "LoadData name) | source (the laboratory); none = ERM (no domain head)",
        choices=DOMAIN_LABELS)
    lambda_schedule: str = hparam("ganin", "GRL strength over training progress p in [0, 1]",
                                  choices=list_schedules(), when=DANN_ONLY)
    lambda_max: float = hparam(1.0, "GRL strength the schedule rises to", low=0.01, high=10.0, log=True,
                             minimum=0.0, maximum=100.0, when=DANN_ONLY)
    lambda_gamma: float = hparam(10.0, "steepness of the 'ganin' schedule", low=1.0, high=30.0,
                                 minimum=1e-3, maximum=100.0, when={"lambda_schedule": ("ganin",)})
    lambda_warmup: float = hparam(0.25, "'linear' schedule: progress at which λ reaches lambda_max",
                                  low=0.0, high=1.0, when={"lambda_schedule": ("linear",)})
    lambda_p0: float = hparam(0.5, "'step' schedule: progress at which λ jumps to lambda_max",
                              low=0.0, high=1.0, when={"lambda_schedule": ("step",)})
    adversary: str = hparam(
        "dann", "dann: the domain head sees the embedding; cdann: it also sees the class (Li et al. "
        "2018, DomainBed's CDANN), so it cannot read the siRNA group off a plate", choices=ADVERSARIES,
        when=DANN_ONLY)
    domain_sites: str = hparam(
        "all", "training sites the domain loss sees: all | controls (control wells have the same "
        "label mix on every plate and experiment; the label loss still sees every site)",
        choices=DOMAIN_SITES, when=DANN_ONLY)
    domain_width: int = hparam(1024, "hidden units of each domain-head layer",
                               choices=(256, 512, 1024), low=1, when=DANN_ONLY)
    domain_depth: int = hparam(2, "hidden layers of the domain head (0 = linear)", low=0, high=3,
                               maximum=8, when=DANN_ONLY)
    domain_dropout: float = hparam(0.5, "dropout after each domain-head hidden layer", low=0.0, high=0.7,
                                  maximum=0.95, when=DANN_ONLY)
    domain_lr_mult: float = hparam(1.0, "domain head learning rate = lr x this", low=0.1, high=10.0, log=True,
                                 minimum=0.0, maximum=100.0, when=DANN_ONLY)
    env_label_smoothing: float = hparam(
        0.0, "environment label smoothing of the domain loss (Zhang et al. 2023)", low=0.0, high=0.5,
        maximum=0.95, when=DANN_ONLY)
    # ---------------------------------------------------------------------------- optimisation
    optimizer: str = hparam("adamw", "adamw | sgd (Nesterov momentum)", choices=("adamw", "sgd"))
    lr: float = hparam(1e-3, "peak learning rate (after warm-up, before cosine decay)",
                       low=1e-5, high=1.0, log=True, minimum=0.0, maximum=10.0)
    weight_decay: float = hparam(1e-4, "decoupled (AdamW) or L2 (SGD) weight decay; not on biases/norms",
                                 low=1e-6, high=0.1, log=True,
                                 minimum=0.0, maximum=1.0)
    momentum: float = hparam(0.9, "SGD momentum (ignored by AdamW)", low=0.5, high=0.99,
                             minimum=0.0, maximum=0.999, when={"optimizer": ("sgd",)})
    warmup_fraction: float = hparam(0.1, "share of all steps spent warming the lr up linearly from 0",
                                    low=0.0, high=0.5, maximum=0.9)
    label_smoothing: float = hparam(0.0, "label smoothing of the siRNA loss", low=0.0, high=0.3,
                                  maximum=0.95)
    class_balance: bool = hparam(
        True, "weigh the siRNA loss by inverse class frequency in training (every control is on "
        "every plate, so controls outnumber each treatment)", choices=(True, False))
    # ------------------------------------------------------------------ sampling of the sites
    resampling: str = hparam(
        "none", "how each epoch draws its training sites: none (each site once, shuffled) | adaptive "
        "(AR: with replacement, by the rarity of each site's embedding in the previous epoch; "
        "rxsweep.training.resampling)", choices=RESAMPLING)
    ar_bins: int = hparam(100, "AR: histogram bins per embedding dimension", choices=(25, 50, 100),
                          low=1, maximum=10_000, when=AR_ONLY)
    ar_smoothing: float = hparam(1e-3, "AR: added to each bin's density before inverting it (larger: "
                                 "flatter weights)", low=1e-4, high=1e-1, log=True, minimum=0.0,
                                 maximum=10.0, when=AR_ONLY)
    ar_warmup_epochs: int = hparam(1, "AR: epochs of plain sampling before the first weights (the "
                                   "weights need an embedding that has learned something)", low=1,
                                   high=3, maximum=1_000, when=AR_ONLY)
    ar_mix: float = hparam(0.1, "AR: share of each epoch's draws that is uniform, so no site's chance "
                           "falls to 0 (smoothing alone does not guarantee it)", low=0.0, high=0.5,
                           maximum=1.0, when=AR_ONLY)
    ar_weights_from: Optional[str] = setting(
        None, "AR from precomputed weights: a Parquet of site_id and weight, or of site_id and "
        "embedding (weights computed once with ar_bins and ar_smoothing); used from the first epoch, "
        "ar_warmup_epochs ignored. Needs resampling: adaptive")
    # ------------------------------------------------------------------- images and augmentation
    normalization: str = hparam("plate", "per-channel normalisation (see rxsweep.data.transforms)",
                                choices=NORMALIZATIONS)
    rotate90: bool = hparam(True, "random multiples of 90 degrees in training", choices=(True, False))
    flip: bool = hparam(True, "random horizontal flips in training", choices=(True, False))
    crop: Optional[int] = setting(None, "random crop to this edge in training, centre crop in "
                                  "evaluation; null = full image", low=8)
    intensity_jitter: float = hparam(0.0, "per image and channel gain/offset jitter amplitude",
                                     low=0.0, high=0.3, maximum=1.0)
    # ------------------------------------------------------------------------------------ splits
    val_experiments: tuple[str, ...] = setting((), "held-out validation experiments (empty: draw "
                                               "n_val_per_cell_type per cell type)")
    test_experiments: tuple[str, ...] = setting((), "held-out test experiments, reported only")
    n_val_per_cell_type: int = setting(1, "held-out validation experiments drawn per cell type", low=0)
    n_test_per_cell_type: int = setting(1, "held-out test experiments drawn per cell type", low=0)
    n_val_sources: int = setting(0, "held-out validation sources (laboratories): every experiment of "
                                 "each; > 0 replaces n_val_per_cell_type", low=0)
    n_test_sources: int = setting(0, "held-out test sources (laboratories): every experiment of each; "
                                  "> 0 replaces n_test_per_cell_type", low=0)
    holdout_fraction: float = setting(0.1, "share of training wells kept for val_acc", low=0.0, high=0.9)
    split_seed: int = setting(0, "seed of the split draw (kept apart from seed: every training seed "
                              "is judged on the same experiments)", low=0)
    # ------------------------------------------------------------------------------ run settings
    epochs: int = setting(10, "passes over the training split", low=1)
    batch_size: int = setting(32, "images per step per worker (global batch = this x num_workers)", low=2)
    max_steps_per_epoch: Optional[int] = setting(None, "cap on steps per epoch (debugging)", low=1)
    seed: int = setting(0, "seeds model init, data order and augmentation", low=0)
    in_channels: Optional[int] = setting(None, "image channels; null = the shards' (a mismatch is an error)",
                                         low=1)
    num_workers: int = setting(1, "Ray Train workers (DDP ranks)", low=1)
    cpus_per_worker: float = setting(1.0, "CPUs a worker reserves; on CPU also its torch threads", low=0.5)
    gpus_per_worker: float = setting(0.0, "GPUs a worker reserves; > 0 trains on GPU (NCCL, bf16)",
                                     low=0.0)
    materialize: bool = setting(True, "hold the splits in Ray's object store (epochs don't re-read the "
                                "shards); false streams them from disk every epoch", choices=(True, False))
    shuffle_buffer: int = setting(256, "rows in each worker's local shuffle buffer (materialize: true)",
                                  low=0)
    stream_buffer_mb: int = setting(1024, "MiB of images a worker holds when it streams its training "
                                    "sites (materialize: false): the more, the more plates a batch mixes",
                                    low=1)
    keep_checkpoints: int = setting(2, "most recent checkpoints kept (the last one holds the embeddings)",
                                    low=1)
    heldout_eval: str = setting("every_epoch", "when the held-out experiments are evaluated (metrics, "
                                "embeddings, mixing): every_epoch, or last_epoch for a run judged only at "
                                "its end (a sweep's confirmation runs: half their time was these passes)",
                                choices=("every_epoch", "last_epoch"))
    fault_drill_epoch: Optional[int] = setting(
        None, "fault drill: every rank raises right after this epoch's checkpoint is reported, so the run "
        "ends only if its restart (failures: in the space) resumes from that checkpoint; a restart that "
        "began again would reach this epoch and raise again. `rxsweep sweep --smoke` sets 1", low=1)

    # -------------------------------------------------------------------------------- derived
    @property
    def adversarial(self) -> bool:
        """True when a domain head trains against the features (domain_label is not none)."""
        return self.domain_label != "none"

    @property
    def method(self) -> str:
        """The method family the verdict compares: 'erm' (no domain head), else the adversary."""
        return self.adversary if self.adversarial else "erm"

    @property
    def adaptive(self) -> bool:
        """True when epochs are drawn by adaptive resampling (rxsweep.training.resampling)."""
        return self.resampling == "adaptive"

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def schedule_kwargs(self) -> dict:
        """Keyword arguments of the chosen λ schedule."""
        return {"ganin": {"gamma": self.lambda_gamma}, "linear": {"warmup": self.lambda_warmup},
                "step": {"p0": self.lambda_p0}}.get(self.lambda_schedule, {})

    def split_spec(self) -> SplitSpec:
        return SplitSpec(self.val_experiments, self.test_experiments, self.n_val_per_cell_type,
                         self.n_test_per_cell_type, self.holdout_fraction, self.split_seed,
                         self.n_val_sources, self.n_test_sources)

    def augment_spec(self) -> AugmentSpec:
        return AugmentSpec(self.rotate90, self.flip, self.crop, self.intensity_jitter)

    # ----------------------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        hints = _hints()
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _check_type(f.name, getattr(self, f.name), hints[f.name]))
        for f in dataclasses.fields(self):
            _check_range(f.name, getattr(self, f.name), f.metadata["spec"])
        if self.ar_weights_from is not None and self.resampling != "adaptive":
            raise ConfigError(f"ar_weights_from={self.ar_weights_from!r} needs resampling: adaptive "
                              f"(got {self.resampling!r})")
        if self.fault_drill_epoch is not None and self.fault_drill_epoch >= self.epochs:
            raise ConfigError(f"fault_drill_epoch={self.fault_drill_epoch} must be below epochs={self.epochs}: "
                              "the drill needs an epoch after it to resume into")
        if set(self.val_experiments) & set(self.test_experiments):
            raise ConfigError(f"experiments {sorted(set(self.val_experiments) & set(self.test_experiments))} "
                              "are in both val_experiments and test_experiments")

    # ------------------------------------------------------------------------ (de)serialising
    @classmethod
    def from_dict(cls, values: dict | None) -> "TrainConfig":
        """Build from a mapping; unknown keys and wrong types raise ConfigError."""
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ConfigError("a training config must be a mapping of field: value, "
                              f"got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown training config field {key!r}{hint}; known fields: {known}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "TrainConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            values = yamlio.safe_load(path.read_text())
        except yamlio.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        try:
            return cls.from_dict(values)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def with_overrides(self, overrides: dict | None = None, **kwargs) -> "TrainConfig":
        """A copy with some fields changed (same checks as from_dict)."""
        return type(self).from_dict({**self.to_dict(), **(overrides or {}), **kwargs})

    def to_dict(self) -> dict:
        """Plain YAML/JSON-safe values (tuples become lists)."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    def to_yaml(self) -> str:
        return yamlio.safe_dump(self.to_dict(), sort_keys=False)

    def diff(self, other: "TrainConfig") -> dict[str, tuple[Any, Any]]:
        """{field: (self's value, other's value)} for every field that differs."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}

    def unresumable_diff(self, other: "TrainConfig") -> dict[str, tuple[Any, Any]]:
        """:meth:`diff` less RESUMABLE_CHANGES: what a run saved with ``self`` cannot resume as."""
        return {k: v for k, v in self.diff(other).items() if k not in RESUMABLE_CHANGES}


#: Fields a run may change when it resumes: they shape where and how fast it runs, not its state
#: (a checkpoint of 2 workers resumes on 1; a streamed run resumes materialized).
RESUMABLE_CHANGES = frozenset({"num_workers", "cpus_per_worker", "gpus_per_worker", "keep_checkpoints",
                               "materialize", "shuffle_buffer", "stream_buffer_mb", "fault_drill_epoch"})


def field_specs() -> dict[str, tuple[Any, Spec]]:
    """{field: (default, Spec)} of every TrainConfig field, in declaration order."""
    return {f.name: (f.default, f.metadata["spec"]) for f in dataclasses.fields(TrainConfig)}


def hparam_specs() -> dict[str, tuple[Any, Spec]]:
    """The searchable subset of :func:`field_specs` (what a sweep may vary)."""
    return {k: v for k, v in field_specs().items() if v[1].searchable}


# -------------------------------------------------------------------------------- type checks

def _hints() -> dict:
    return typing.get_type_hints(TrainConfig)


def _type_name(hint) -> str:
    if _is_optional(hint):
        return f"{_type_name(_inner(hint))} or null"
    if typing.get_origin(hint) is tuple:
        return f"a list of {typing.get_args(hint)[0].__name__}"
    return {float: "a number", int: "an integer", bool: "true/false", str: "a string"}[hint]


def _is_optional(hint) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _inner(hint):
    return next(a for a in typing.get_args(hint) if a is not type(None))


def _check_type(name: str, value, hint):
    if _is_optional(hint):
        return None if value is None else _check_type(name, value, _inner(hint))
    bad = ConfigError(f"{name} must be {_type_name(hint)}, got {value!r} ({type(value).__name__})")
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                not all(isinstance(v, item) for v in value):
            raise bad
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise bad
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be finite, got {value}")
    elif not isinstance(value, hint):
        raise bad
    return value


def _check_range(name: str, value, spec: Spec) -> None:
    if value is None or isinstance(value, tuple):
        return
    if isinstance(value, (str, bool)):
        if spec.choices is not None and value not in spec.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in spec.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{name}={value!r} is not one of {list(spec.choices)}{hint}")
        return
    # Numbers: low/high are the legal range. Numeric choices (embedding_dim, domain_width) are the
    # sweep's suggestions, not the only legal values.
    low, high = spec.legal
    if low is not None and value < low or high is not None and value > high:
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ConfigError(f"{name}={value!r} is out of range [{lo}, {hi}]")
