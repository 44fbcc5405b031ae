"""`generate_loaddata()`: write a synthetic JUMP-like Cell Painting world.

Flow: validate arguments -> check the output folder -> plan the design, phenotypes and the three
levels of batch effects in this process (`_plan`) -> render plates in a process pool (job.py; each
writes its images and load_data.csv) -> platemap.csv -> truth.json beside the root, last, as the
completion marker. Refusal and idempotence follow synth.generator: a folder holding anything but a
finished or interrupted generation of the same identity is refused, never mixed into.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth.biology import CELL_TYPE_BIOLOGY, draw_phenotypes
from rxsweep.data.synth.cellpainting.design import Design, as_labels, make_design
from rxsweep.data.synth.cellpainting.job import PlateTask, run_plate
from rxsweep.data.synth.cellpainting.layout import write_platemap
from rxsweep.data.synth.cellpainting.nuisance import draw_batch_shift, draw_plate_shift, draw_source
from rxsweep.data.synth.cellpainting.presets import LoadDataPreset, get_loaddata_preset
from rxsweep.data.synth.cellpainting.truth import build_truth
from rxsweep.data.synth.output_folder import check_seed_and_workers, claim, finish, run_tasks

#: Bump when the same arguments would produce different files; it is part of an output's identity.
LOADDATA_GENERATOR_VERSION = 1
KIND = "cellpainting-loaddata"  # tells this world's identity from a synthetic RxRx1's
CELL_TYPE = "U2OS"  # JUMP's cell line


def _check_args(preset: str, seed: int, workers: int | None) -> LoadDataPreset:
    spec = get_loaddata_preset(preset)
    check_seed_and_workers(seed, workers)
    return spec


def _plan(spec: LoadDataPreset, seed: int, root: Path) -> tuple[list[PlateTask], Design, dict]:
    """Every plate's task, the design, and truth.json's content but its identity. All draws happen
    here, so the workers only render (and a test can re-run any single plate on its own)."""
    design = make_design(spec, seed)
    phenotypes = draw_phenotypes(as_labels(design.perturbations), spec.null_fraction, seed)
    effects = {p.index: tuple(float(x) for x in spec.phenotype_scale * phenotypes.effect(p.index, CELL_TYPE))
               for p in design.perturbations}
    # Geometry as synth.generator's: cells are sized in pixels of RxRx1's 512² field.
    pixel_scale = spec.cell_scale
    field_area = (spec.image_size / spec.cell_scale / rxrx1_facts.IMAGE_SIZE) ** 2
    sources, shifts, tasks = {}, {}, []
    for plate in design.plates:
        s, b, _ = plate.key
        if plate.source not in sources:
            sources[plate.source] = draw_source(seed, s)
        batch_shift = shifts.setdefault((plate.source, plate.batch), draw_batch_shift(seed, s, b))
        plate_shift = shifts[(plate.source, plate.batch, plate.plate)] = draw_plate_shift(seed, plate.key)
        tasks.append(PlateTask(
            seed=seed, root=str(root), plate=plate, effects=tuple(effects[i] for _, i in plate.wells),
            biology=CELL_TYPE_BIOLOGY[CELL_TYPE], source=sources[plate.source],
            shifts=(batch_shift, plate_shift), sites=spec.sites_per_well, image_size=spec.image_size,
            pixel_scale=pixel_scale, field_area=field_area,
        ))
    geometry = {"pixel_scale": pixel_scale, "field_area": field_area}
    truth = build_truth(spec, design, effects, sources, shifts, CELL_TYPE, geometry)
    return tasks, design, truth


def generate_loaddata(out: Path | str, preset: str = "tiny", seed: int = 0,
                      workers: int | None = None) -> Path:
    """Write a synthetic JUMP-like Cell Painting world into `out` and return it (the data root).

    out: the data root (created; must be empty, or hold a generation of the same arguments, which
        is finished at once or, if interrupted, completed). truth.json goes beside it.
    preset: 'tiny' | 'small' (see presets.LOADDATA_PRESETS).
    seed: every random draw derives from it; same seed -> byte-identical files, any worker count.
    workers: processes rendering plates; default os.cpu_count().
    """
    spec = _check_args(preset, seed, workers)
    root = Path(out)
    identity = json.loads(json.dumps({"kind": KIND, "generator_version": LOADDATA_GENERATOR_VERSION,
                                      "preset": asdict(spec), "seed": seed}))  # as read back from disk
    if claim(root, root, identity, "synthetic Cell Painting LoadData world"):
        return root
    tasks, design, truth = _plan(spec, seed, root)
    run_tasks(run_plate, tasks, workers or os.cpu_count() or 1)
    write_platemap(root, design)
    finish(root, {**truth, "identity": identity})
    return root
