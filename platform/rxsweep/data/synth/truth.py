"""truth.json: every parameter the generator drew, so analyses can score against the ground truth
(which siRNAs are null, how strong each batch effect is, how strong each siRNA is in each experiment)
and Kaggle-test answers can be checked.

Top-level keys: identity, layout, seed, image_size, preset, geometry, cell_types, cell_type_biology,
phenotype_params, experiments (design, splits, batch and plate shifts), sirnas (well type, group,
effect vector and per-cell-type scale), sirna_experiment (the experiment x siRNA interaction: `sd`
and `turn` of the preset, `sd_by_well_type`, and `factors`: experiment name -> the factor of every
label in sirna_id order, exactly as rendered: effect in that experiment = factor x the cell-type
effect, up to a small turn of direction), and for the Kaggle layout kaggle_test_answers."""

from __future__ import annotations

from dataclasses import asdict

from rxsweep.data.synth import seeds
from rxsweep.data.synth.batch import ExperimentBatch, PlateShift
from rxsweep.data.synth.biology import CELL_TYPE_BIOLOGY, PHENOTYPE_PARAMS, Phenotypes
from rxsweep.data.synth.interaction import Interaction
from rxsweep.data.synth.plate_map import Plan
from rxsweep.data.synth.presets import Preset


def build_truth(
    identity: dict, spec: Preset, plan: Plan, phenotypes: Phenotypes, interaction: Interaction,
    batches: dict[str, ExperimentBatch], shifts: dict[tuple[str, int], PlateShift],
    geometry: dict[str, float],
) -> dict:
    """The JSON-ready record of a generation (the Kaggle answers are added by the Kaggle writer)."""
    experiments = [{
        "name": exp.name, "cell_type": exp.cell_type, "kaggle_split": exp.kaggle_split,
        "wilds_split": exp.wilds_split, "group_order": list(exp.group_order),
        "batch": batches[exp.name].to_json(),
        "plates": {str(p.plate): {"group": p.group, "shift": shifts[(exp.name, p.plate)].to_json()}
                   for p in exp.plates},
    } for exp in plan.experiments]
    sirnas = [{
        "sirna_id": s.sirna_id, "name": s.name, "well_type": s.well_type, "group": s.group,
        "null": bool(s.well_type == "treatment" and phenotypes.strength[s.sirna_id] == 0),
        "strength": float(phenotypes.strength[s.sirna_id]),
        "effect": [float(x) for x in phenotypes.vectors[s.sirna_id]],
        "cell_type_scale": [float(x) for x in phenotypes.cell_type_scale[s.sirna_id]],
    } for s in plan.sirnas]
    return {
        "identity": identity,
        "layout": identity["layout"],
        "seed": identity["seed"],
        "image_size": identity["image_size"],
        "preset": {**asdict(spec), "n_classes": spec.n_classes, "n_sites": spec.n_sites},
        "geometry": geometry,
        "cell_types": list(seeds.CELL_TYPES),
        "cell_type_biology": {ct: asdict(bio) for ct, bio in CELL_TYPE_BIOLOGY.items()},
        "phenotype_params": list(PHENOTYPE_PARAMS),
        "experiments": experiments,
        "sirnas": sirnas,
        "sirna_experiment": interaction.to_json(),
    }
