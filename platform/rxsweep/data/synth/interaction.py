"""Experiment x siRNA interaction: the same siRNA is not equally strong in every experiment.

In real RxRx1 an siRNA's phenotype varies between experiments of one cell type (knock-down
efficiency, cell state, passage), so held-out experiments differ from training ones in biology as
well as in imaging nuisance. Here every (experiment e, label s) pair gets

    effect(e, s) = factor[e, s] * |b| * unit(b * exp(turn[e, s]))

with b the cell-type effect of s (biology.py: vector * cell_type_scale), and per pair:

factor: lognormal, median 1, log-sd by well type:
    treatment          preset.sirna_experiment_sd
    positive_control   preset.sirna_experiment_sd * POSITIVE_CONTROL_SD_RATIO: controls are picked
                       because they work in every experiment (RxRx1 uses them for plate QC), so
                       they keep a strong phenotype everywhere;
    negative_control   0 (factor 1; the untreated well is the baseline, with no effect to scale).
turn: a small change of the phenotype's direction: each of its parameters is scaled by its own
    exp(N(0, preset.sirna_experiment_turn)) (the same ratio for positive controls as their
    factor's sd), so signs and sparsity are kept (a null siRNA stays null) and only the balance
    between the parameters of a phenotype shifts.
So |effect(e, s)| / |b| is exactly factor[e, s]. Factors are rounded to 6 decimals *before* use, so
the values in truth.json are the ones the images were rendered with. Null siRNAs draw a factor
too (the streams stay aligned), but it multiplies a zero vector.

Draws come from one stream per experiment, (seed, INTERACTION, experiment key): independent of
worker count, of the phenotype and batch streams, and of the other experiments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rxsweep.data.synth import seeds
from rxsweep.data.synth.biology import N_PARAMS, Phenotypes
from rxsweep.data.synth.plate_map import Plan
from rxsweep.data.synth.presets import Preset

#: Positive controls' log-sd (and turn) relative to treatments'. A quarter: at the `full` sd of 0.3,
#: 95 % of a control's factors lie in 0.86-1.16, so a control never drops to a weak phenotype.
POSITIVE_CONTROL_SD_RATIO = 0.25
_DECIMALS = 6  # factors are rounded before use, so truth.json records the exact value used
#: Multiplier of the preset's sd (and turn) by well type.
SD_SCALE = {"treatment": 1.0, "positive_control": POSITIVE_CONTROL_SD_RATIO, "negative_control": 0.0}


@dataclass(frozen=True)
class Interaction:
    """Per-experiment strength factors and direction turns of every label."""

    experiments: tuple[str, ...]  # experiment names, row order of `factors`
    factors: np.ndarray  # [n_experiments, n_classes] float64, > 0
    turns: np.ndarray  # [n_experiments, n_classes, N_PARAMS] log-scale of each parameter, N(0, turn)
    sd: float  # the preset's log-sd for treatments
    turn: float  # the preset's log-sd of the per-parameter turn for treatments

    def effect(self, phenotypes: Phenotypes, experiment: str, cell_type: str, sirna_id: int) -> np.ndarray:
        """The effect vector of `sirna_id` in `experiment` (of `cell_type`)."""
        base = phenotypes.effect(sirna_id, cell_type)
        norm = float(np.linalg.norm(base))
        if norm == 0.0 or (self.sd == 0.0 and self.turn == 0.0):
            return base  # no phenotype, or no interaction: exactly the cell-type effect
        e = self.experiments.index(experiment)
        direction = base * np.exp(self.turns[e, sirna_id])
        return self.factors[e, sirna_id] * norm * direction / np.linalg.norm(direction)

    def to_json(self) -> dict:
        """truth.json's `sirna_experiment`: the sds and, per experiment, the factor of every label
        in sirna_id order."""
        return {
            "sd": self.sd,
            "turn": self.turn,
            "sd_by_well_type": {well_type: self.sd * k for well_type, k in SD_SCALE.items()},
            "factors": {name: [float(f) for f in row] for name, row in zip(self.experiments, self.factors)},
        }


def draw_interaction(plan: Plan, spec: Preset, seed: int) -> Interaction:
    """Factors and turns of every (experiment, label) pair of `plan`."""
    scale = np.array([SD_SCALE[s.well_type] for s in plan.sirnas])
    factors, turns = [], []
    for exp in plan.experiments:
        rng = seeds.rng_for(seed, seeds.INTERACTION, *exp.key)
        z = rng.standard_normal(len(plan.sirnas))
        raw = rng.standard_normal((len(plan.sirnas), N_PARAMS))
        factors.append(np.round(np.exp(spec.sirna_experiment_sd * scale * z), _DECIMALS))
        turns.append(spec.sirna_experiment_turn * scale[:, None] * raw)
    return Interaction(
        experiments=tuple(exp.name for exp in plan.experiments),
        factors=np.stack(factors), turns=np.stack(turns),
        sd=float(spec.sirna_experiment_sd), turn=float(spec.sirna_experiment_turn),
    )
