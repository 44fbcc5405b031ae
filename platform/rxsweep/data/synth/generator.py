"""`generate()`: write a synthetic RxRx1 in the Kaggle or WILDS layout.

Flow: validate arguments -> check the output folder -> plan the design (plate_map), phenotypes
(biology), their experiment x siRNA interaction (interaction) and batch parameters (batch) in this
process -> render plates in a process pool (job) -> write the tables -> write truth.json last, as
the completion marker.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth.batch import draw_experiment_batch, draw_plate_shift
from rxsweep.data.synth.biology import CELL_TYPE_BIOLOGY, draw_phenotypes
from rxsweep.data.synth.interaction import draw_interaction
from rxsweep.data.synth.job import PlateTask, run_plate
from rxsweep.data.synth.output_folder import check_seed_and_workers, claim, finish, run_tasks
from rxsweep.data.synth.plate_map import make_plan
from rxsweep.data.synth.presets import Preset, get_preset
from rxsweep.data.synth.truth import build_truth
from rxsweep.data.synth.writers import (
    LAYOUTS, dataset_root, plate_image_dir, write_kaggle_tables, write_wilds_tables,
)

#: Bump when the same arguments would produce different files; it is part of an output's identity.
#: 2: experiment x siRNA interaction (interaction.py).
GENERATOR_VERSION = 2


def default_image_size(preset: Preset, layout: str) -> int:
    """The preset's native size; WILDS images are at most 256² as in the real rxrx1_v1.0."""
    if layout == "wilds":
        return min(preset.image_size, rxrx1_facts.WILDS_IMAGE_SIZE)
    return preset.image_size


def _check_args(
    layout: str, preset: str, seed: int, image_size: int | None, workers: int | None
) -> Preset:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {list(LAYOUTS)}")
    spec = get_preset(preset)
    check_seed_and_workers(seed, workers)
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or not 16 <= image_size <= 4096
    ):
        raise ValueError(f"image_size must be an int in 16..4096, got {image_size!r}")
    return spec


def generate(out: Path | str, layout: str, preset: str, seed: int = 0,
             image_size: int | None = None, workers: int | None = None) -> Path:
    """Write a synthetic RxRx1 dataset and return its root (the folder to give the readers).

    out: folder to write (created; must be empty, or a previous output of the same arguments).
    layout: 'kaggle' (root = out) or 'wilds' (root = out/rxrx1_v1.0).
    preset: 'tiny' | 'small' | 'full' (see presets.PRESETS).
    seed: every random draw derives from it; same seed -> byte-identical files, any worker count.
    image_size: output width = height; default the preset's (at most 256 for WILDS). The field of
        view stays the preset's: a different size changes resolution, not content.
    workers: processes rendering plates; default os.cpu_count().
    """
    spec = _check_args(layout, preset, seed, image_size, workers)
    size = image_size or default_image_size(spec, layout)
    out = Path(out)
    root = dataset_root(out, layout)
    identity = {"generator_version": GENERATOR_VERSION, "layout": layout, "preset": asdict(spec),
                "seed": seed, "image_size": size}
    identity = json.loads(json.dumps(identity))  # tuples -> lists, to compare with what is on disk
    if claim(out, root, identity, f"synthetic RxRx1 of layout {layout!r}"):
        return root

    plan = make_plan(spec, seed)
    phenotypes = draw_phenotypes(plan.sirnas, spec.null_fraction, seed)
    interaction = draw_interaction(plan, spec, seed)
    # Geometry: cells are sized in pixels of the real 512² field; a preset's cell_scale shrinks
    # them, an image_size override only changes resolution (the field of view is the preset's).
    pixel_scale = spec.cell_scale * size / spec.image_size
    field_area = (spec.image_size / spec.cell_scale / rxrx1_facts.IMAGE_SIZE) ** 2
    tasks, batches, shifts = [], {}, {}
    for exp in plan.experiments:
        batches[exp.name] = draw_experiment_batch(seed, exp.key)
        for plate in exp.plates:
            shift = shifts[(exp.name, plate.plate)] = draw_plate_shift(seed, exp.key, plate.plate)
            tasks.append(PlateTask(
                seed=seed, layout=layout, root=str(root),
                image_dir=plate_image_dir(layout, exp.kaggle_split, exp.name, plate.plate),
                experiment=exp.name, key=exp.key, plate=plate.plate, wells=plate.wells,
                effects=tuple(tuple(interaction.effect(phenotypes, exp.name, exp.cell_type, s))
                              for _, s in plate.wells),
                biology=CELL_TYPE_BIOLOGY[exp.cell_type], batch=batches[exp.name], shift=shift,
                image_size=size, pixel_scale=pixel_scale, field_area=field_area,
            ))

    stats = [row for rows in run_tasks(run_plate, tasks, workers or os.cpu_count() or 1) for row in rows]
    geometry = {"pixel_scale": pixel_scale, "field_area": field_area}
    truth = build_truth(identity, spec, plan, phenotypes, interaction, batches, shifts, geometry)
    if layout == "kaggle":
        truth["kaggle_test_answers"] = write_kaggle_tables(root, plan, stats)
    else:
        write_wilds_tables(root, plan)
    finish(root, truth)
    return root
