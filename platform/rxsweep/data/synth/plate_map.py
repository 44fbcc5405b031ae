"""The experimental design of a synthetic RxRx1: siRNA labels, experiments and their splits, and the
plate maps (which siRNA sits in which well), following the real design (see rxrx1_facts.py).

Labels are as in Kaggle and WILDS: treatments 0..T-1, positive controls T..T+P-1, untreated T+P.
Treatments form 4 plate groups; each experiment puts the groups on plates 1-4 in its own order and
each plate places its conditions on random positions among the 308 usable wells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth import seeds
from rxsweep.data.synth.presets import Preset

EMPTY = "EMPTY"  # the sirna name of the untreated well in the WILDS metadata


@dataclass(frozen=True)
class Sirna:
    sirna_id: int
    name: str  # 's' + 5 digits, or EMPTY
    well_type: str  # one of rxrx1_facts.WELL_TYPES
    group: int | None  # plate group 0..3 of a treatment; None for controls


@dataclass(frozen=True)
class PlatePlan:
    plate: int  # 1..4
    group: int  # the treatment group on this plate
    wells: tuple[tuple[str, int], ...]  # (well, sirna_id), sorted by well position


@dataclass(frozen=True)
class ExperimentPlan:
    name: str  # 'HEPG2-01'
    cell_type: str
    number: int
    kaggle_split: str  # train | test
    wilds_split: str  # train | val | test
    group_order: tuple[int, ...]  # group on plate 1, 2, 3, 4
    plates: tuple[PlatePlan, ...]

    @property
    def key(self) -> tuple[int, int]:
        return seeds.experiment_key(self.cell_type, self.number)


@dataclass(frozen=True)
class Plan:
    sirnas: tuple[Sirna, ...]  # indexed by sirna_id
    experiments: tuple[ExperimentPlan, ...]


def make_sirnas(preset: Preset, seed: int) -> tuple[Sirna, ...]:
    """All labels of the preset. Names are distinct random 's#####' ids, like the real ones."""
    rng = seeds.rng_for(seed, seeds.DESIGN, 0)
    n_named = preset.n_treatments + preset.positive_controls
    numbers = rng.choice(np.arange(10_000, 100_000), size=n_named, replace=False)
    # Treatments are dealt into groups at random (the real groups are not contiguous id ranges).
    groups = rng.permutation(np.arange(preset.n_treatments) % rxrx1_facts.N_PLATE_GROUPS)
    sirnas = [
        Sirna(i, f"s{numbers[i]:05d}", "treatment", int(groups[i])) for i in range(preset.n_treatments)
    ]
    sirnas += [
        Sirna(i, f"s{numbers[i]:05d}", "positive_control", None)
        for i in range(preset.n_treatments, n_named)
    ]
    sirnas.append(Sirna(n_named, EMPTY, "negative_control", None))
    return tuple(sirnas)


def _split_of(index: int, n_train: int) -> tuple[str, str]:
    """(Kaggle split, WILDS split) of the index-th (0-based) experiment of a cell type."""
    if index < n_train:
        return "train", "train"
    return "test", ("val" if index == n_train else "test")


def _plate_plan(
    seed: int, key: tuple[int, int], plate: int, group: int, sirnas: tuple[Sirna, ...]
) -> PlatePlan:
    conditions = [s.sirna_id for s in sirnas if s.group == group or s.group is None]
    wells = rxrx1_facts.all_wells()
    rng = seeds.rng_for(seed, seeds.PLATE, *key, plate)
    # A random injective map of conditions onto the 308 positions: with fewer than 308 conditions
    # some still land on edge wells, so position effects stay in the data.
    positions = rng.choice(len(wells), size=len(conditions), replace=False)
    placed = sorted((int(p), c) for p, c in zip(positions, conditions))
    return PlatePlan(plate, group, tuple((wells[p], c) for p, c in placed))


def make_plan(preset: Preset, seed: int) -> Plan:
    """The whole design of `preset` under `seed`; a pure function of both."""
    sirnas = make_sirnas(preset, seed)
    n_train = dict(preset.train_experiments)
    experiments = []
    for cell_type, n in preset.experiments:
        for index in range(n):
            number = index + 1
            key = seeds.experiment_key(cell_type, number)
            order = seeds.rng_for(seed, seeds.PLATE, *key, 0).permutation(rxrx1_facts.N_PLATE_GROUPS)
            plates = tuple(
                _plate_plan(seed, key, p + 1, int(order[p]), sirnas)
                for p in range(rxrx1_facts.PLATES_PER_EXPERIMENT)
            )
            kaggle, wilds = _split_of(index, n_train[cell_type])
            experiments.append(
                ExperimentPlan(
                    name=rxrx1_facts.experiment_name(cell_type, number),
                    cell_type=cell_type,
                    number=number,
                    kaggle_split=kaggle,
                    wilds_split=wilds,
                    group_order=tuple(int(g) for g in order),
                    plates=plates,
                )
            )
    return Plan(sirnas=sirnas, experiments=tuple(experiments))


def id_code(experiment: str, plate: int, well: str) -> str:
    """'HEPG2-01', 1, 'B03' -> 'HEPG2-01_1_B03' (Kaggle id_code, WILDS well_id)."""
    return f"{experiment}_{plate}_{well}"
