"""One unit of parallel work: render and write every site of one plate.

A PlateTask carries everything a worker needs (no shared state), and every site draws from its own
stream (seed, SITE, experiment, plate, well, site), so the bytes written do not depend on which
worker renders which plate or in what order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth import seeds
from rxsweep.data.synth.batch import ExperimentBatch, PlateShift, apply_batch
from rxsweep.data.synth.biology import CellTypeBiology, morphology
from rxsweep.data.synth.plate_map import id_code
from rxsweep.data.synth.render import render_cells
from rxsweep.data.synth.writers import pixel_stats_rows, write_site_images


_WELL_INDEX = {well: i for i, well in enumerate(rxrx1_facts.all_wells())}


@dataclass(frozen=True)
class PlateTask:
    seed: int
    layout: str
    root: str  # dataset root
    image_dir: str  # plate folder relative to root
    experiment: str
    key: tuple[int, int]  # seeds.experiment_key of the experiment
    plate: int
    wells: tuple[tuple[str, int], ...]  # (well, sirna_id)
    effects: tuple[tuple[float, ...], ...]  # phenotype effect vector of each well, for this cell type
    biology: CellTypeBiology
    batch: ExperimentBatch
    shift: PlateShift
    image_size: int
    pixel_scale: float  # output pixels per pixel of the real 512² field
    field_area: float  # site area in units of the real 512² field


def render_site(task: PlateTask, well: str, effect: np.ndarray, site: int) -> np.ndarray:
    """uint8 [6, H, W] image of one site."""
    rng = seeds.rng_for(task.seed, seeds.SITE, *task.key, task.plate, _WELL_INDEX[well], site)
    edge = rxrx1_facts.is_edge_well(well)
    density = task.batch.density * task.shift.density * (task.batch.edge_density if edge else 1.0)
    m = morphology(task.biology, effect, task.pixel_scale, task.field_area,
                   size_factor=task.batch.cell_size, density_factor=density)
    blur = task.batch.blur_sigma * task.pixel_scale
    clean = render_cells(m, task.image_size, task.pixel_scale, blur, rng)
    return apply_batch(clean, task.batch, task.shift, edge, rng)


def run_plate(task: PlateTask) -> list[tuple]:
    """Render and write all sites of a plate; returns its pixel_stats rows (Kaggle layout only)."""
    folder = Path(task.root) / task.image_dir
    folder.mkdir(parents=True, exist_ok=True)
    stats: list[tuple] = []
    for (well, _sirna), effect in zip(task.wells, task.effects):
        for site in range(1, rxrx1_facts.SITES_PER_WELL + 1):
            image = render_site(task, well, np.asarray(effect), site)
            write_site_images(folder, task.layout, well, site, image)
            if task.layout == "kaggle":
                code = id_code(task.experiment, task.plate, well)
                stats += pixel_stats_rows(code, task.experiment, task.plate, well, site, image)
    return stats
