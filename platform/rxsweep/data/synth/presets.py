"""Size presets of the synthetic RxRx1 generator: every count in one frozen dataclass.

`full` reproduces the real release (rxrx1_facts.py); `tiny` trains on two CPU cores in minutes; `small`
is a native-resolution (512²) set of 3,840 sites for throughput benchmarks. `tiny` keeps 6 labelled
(Kaggle-train) experiments a cell type, so a sweep's split (two held-out validation and two test
experiments a cell type: the fewest batch mixing can be scored on, in selection and in the verdict)
still leaves two to train on in either layout; `small` keeps 3, as real U2OS does.
"""

from __future__ import annotations

from dataclasses import dataclass

from rxsweep.data import rxrx1_facts


@dataclass(frozen=True)
class Preset:
    """How big a synthetic RxRx1 is. Each plate holds one plate group of treatments, every positive
    control and the untreated well; each experiment uses all groups, one a plate."""

    name: str
    #: (cell type, experiments) in design order; experiments are numbered 01..n per cell type.
    experiments: tuple[tuple[str, int], ...]
    #: (cell type, n): the first n experiments of a cell type are Kaggle-train (= WILDS train); of
    #: the rest, the first is WILDS val and the others WILDS test (all of them Kaggle test).
    train_experiments: tuple[tuple[str, int], ...]
    #: Treatment siRNAs on one plate; there are PLATES_PER_EXPERIMENT groups of this size.
    treatments_per_group: int
    #: Positive-control siRNAs, all of them on every plate.
    positive_controls: int
    #: Untreated wells a plate (label EMPTY); the real design has exactly one.
    negative_controls: int
    #: Native width = height of a site image in pixels, per channel.
    image_size: int
    #: Output pixels per pixel of the real 512² field: below 1 the cells shrink so a small image still
    #: holds a field of ~10-20 cells instead of a crop of one or two.
    cell_scale: float
    #: Share of treatment siRNAs with no phenotype at all (about half in RxRx1).
    null_fraction: float = 0.5
    #: Experiment x siRNA interaction (interaction.py): sd of the log of the factor that scales a
    #: treatment's phenotype in one experiment (positive controls get a quarter of it). 0 = the same
    #: strength in every experiment of a cell type, held-out experiments then differ only by nuisance.
    sirna_experiment_sd: float = 0.0
    #: Per-experiment change of a phenotype's direction: sd of the log of an independent factor on
    #: each of its parameters (0.2 = each parameter +-20 %, the norm is then reset to the strength).
    sirna_experiment_turn: float = 0.0

    def __post_init__(self) -> None:
        known = rxrx1_facts.EXPERIMENTS_PER_CELL_TYPE
        total, train = dict(self.experiments), dict(self.train_experiments)
        if set(total) - set(known) or set(total) != set(train):
            raise ValueError(
                f"preset {self.name!r}: experiments/train_experiments must name the same cell types "
                f"out of {sorted(known)}; got {sorted(total)} and {sorted(train)}"
            )
        for cell_type, n in total.items():
            n_train = train[cell_type]
            held_out = n - n_train
            # One held-out experiment for WILDS val and at least one for test, per cell type; WILDS'
            # 'mixed-to-test' scheme discards train experiments 01..(n test), so they must exist.
            if n_train < 1 or held_out < 2 or held_out - 1 > n_train:
                raise ValueError(
                    f"preset {self.name!r}: {cell_type} has {n} experiments, {n_train} train; need "
                    f">= 1 train, >= 2 held out (val + test) and no more test than train experiments"
                )
        if self.negative_controls != rxrx1_facts.N_NEGATIVE_CONTROLS:
            raise ValueError(f"preset {self.name!r}: negative_controls must be 1 (one EMPTY well)")
        if self.treatments_per_group < 1 or self.positive_controls < 1:
            raise ValueError(f"preset {self.name!r}: needs >= 1 treatment a group and >= 1 control")
        if self.wells_per_plate > rxrx1_facts.WELLS_PER_PLATE:
            raise ValueError(
                f"preset {self.name!r}: {self.wells_per_plate} wells a plate > {rxrx1_facts.WELLS_PER_PLATE}"
            )
        if self.image_size < 16 or not 0 < self.cell_scale <= 2 or not 0 <= self.null_fraction <= 1:
            raise ValueError(f"preset {self.name!r}: image_size, cell_scale or null_fraction out of range")
        if not 0 <= self.sirna_experiment_sd <= 1 or not 0 <= self.sirna_experiment_turn <= 1:
            raise ValueError(f"preset {self.name!r}: sirna_experiment_sd and _turn must be in 0..1")

    @property
    def n_plate_groups(self) -> int:
        return rxrx1_facts.N_PLATE_GROUPS

    @property
    def n_treatments(self) -> int:
        return self.treatments_per_group * rxrx1_facts.N_PLATE_GROUPS

    @property
    def n_classes(self) -> int:
        return self.n_treatments + self.positive_controls + self.negative_controls

    @property
    def wells_per_plate(self) -> int:
        return self.treatments_per_group + self.positive_controls + self.negative_controls

    @property
    def n_experiments(self) -> int:
        return sum(n for _, n in self.experiments)

    @property
    def n_sites(self) -> int:
        return (
            self.n_experiments * rxrx1_facts.PLATES_PER_EXPERIMENT * self.wells_per_plate
            * rxrx1_facts.SITES_PER_WELL
        )


# The real plate groups must tile onto plates: 4 groups, one per plate.
assert rxrx1_facts.N_PLATE_GROUPS == rxrx1_facts.PLATES_PER_EXPERIMENT

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        experiments=(("HUVEC", 8), ("RPE", 8), ("HEPG2", 8), ("U2OS", 8)),
        train_experiments=(("HUVEC", 6), ("RPE", 6), ("HEPG2", 6), ("U2OS", 6)),
        treatments_per_group=5,
        positive_controls=3,
        negative_controls=1,
        image_size=64,
        cell_scale=0.3,
        # Larger than full's: a 64² site holds ~15 cells, whose sampling noise hides a 0.3
        # interaction (a feature probe's ID and OOD accuracy do not move at 0.3-0.7); 0.4 keeps it
        # visible in tests and tiny sweeps, and the held-out siRNA accuracy of tests/test_synth.py
        # stays where it was (seed 0: 0.549 with it, 0.535 without; chance 0.042).
        sirna_experiment_sd=0.4,
        sirna_experiment_turn=0.2,
    ),  # 32 experiments x 4 plates x 9 wells x 2 sites = 2,304 sites, 24 classes
    "small": Preset(
        name="small",
        experiments=(("HUVEC", 5), ("RPE", 5), ("HEPG2", 5), ("U2OS", 5)),
        train_experiments=(("HUVEC", 3), ("RPE", 3), ("HEPG2", 3), ("U2OS", 3)),
        treatments_per_group=15,
        positive_controls=8,
        negative_controls=1,
        image_size=rxrx1_facts.IMAGE_SIZE,
        cell_scale=1.0,
        sirna_experiment_sd=0.3,  # as full: the same biology at the same resolution
        sirna_experiment_turn=0.2,
    ),  # 20 x 4 x 24 x 2 = 3,840 sites at 512², 69 classes
    "full": Preset(
        name="full",
        experiments=tuple(rxrx1_facts.EXPERIMENTS_PER_CELL_TYPE.items()),
        train_experiments=tuple(rxrx1_facts.TRAIN_EXPERIMENTS_PER_CELL_TYPE.items()),
        treatments_per_group=rxrx1_facts.TREATMENTS_PER_PLATE,
        positive_controls=rxrx1_facts.N_POSITIVE_CONTROLS,
        negative_controls=rxrx1_facts.N_NEGATIVE_CONTROLS,
        image_size=rxrx1_facts.IMAGE_SIZE,
        cell_scale=1.0,
        # An siRNA's strength varies between experiments about as much as between cell types
        # (biology.py draws cell_type_scale with the same log-sd, 0.3): 95 % of factors in 0.56-1.8.
        # Measured on small's design (3 train experiments a cell type, 128² renders, 3 seeds):
        # image-feature probes (random forest, MLP) lose 1-2 points of held-out accuracy and under
        # 1 in distribution, OOD/ID 0.88-0.90 (imaging nuisance alone) -> 0.86-0.88, toward WILDS'
        # ~0.8 (29.9 % vs 35.9-39.8 %), which a CNN that can learn per-experiment looks should
        # approach more closely; 0.5 costs twice the ID accuracy for a similar gap.
        # Turn 0.2: each phenotype parameter +-20 % per experiment.
        sirna_experiment_sd=0.3,
        sirna_experiment_turn=0.2,
    ),  # 51 x 4 x 308 x 2 = 125,664 sites, 1,139 classes
}


def get_preset(name: str) -> Preset:
    """The preset called `name`; a ValueError lists the known ones."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}") from None
