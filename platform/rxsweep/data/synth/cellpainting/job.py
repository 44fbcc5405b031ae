"""One unit of parallel work: render and write every site of one plate, then its load_data.csv.

A PlateTask carries everything a worker needs (no shared state), and every site draws from its own
stream (seed, SITE, source, batch, plate, well, site), so the bytes written do not depend on which
worker renders which plate or in what order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rxsweep.data.synth import seeds
from rxsweep.data.synth.batch import PlateShift
from rxsweep.data.synth.biology import CellTypeBiology, morphology
from rxsweep.data.synth.cellpainting.channels import CHANNELS, to_cell_painting
from rxsweep.data.synth.cellpainting.design import ALL_WELLS, SITE, PlatePlan, is_edge_well
from rxsweep.data.synth.cellpainting.layout import image_dir, image_name, write_image, write_load_data
from rxsweep.data.synth.cellpainting.nuisance import SourceEffect, density_factor, expose
from rxsweep.data.synth.render import render_cells

_WELL_INDEX = {well: i for i, well in enumerate(ALL_WELLS)}


@dataclass(frozen=True)
class PlateTask:
    seed: int
    root: str  # data root
    plate: PlatePlan
    effects: tuple[tuple[float, ...], ...]  # phenotype effect vector of each well, plate.wells order
    biology: CellTypeBiology
    source: SourceEffect
    shifts: tuple[PlateShift, PlateShift]  # the batch's, then the plate's
    sites: int  # sites a well
    image_size: int
    pixel_scale: float  # output pixels per pixel of the renderer's 512² field
    field_area: float  # site area in units of that field


def render_site(task: PlateTask, well: str, effect: np.ndarray, site: int) -> np.ndarray:
    """uint16 [5, H, W] image of one site, channels in CHANNELS order."""
    rng = seeds.rng_for(task.seed, SITE, *task.plate.key, _WELL_INDEX[well], site)
    edge = is_edge_well(well)
    m = morphology(task.biology, effect, task.pixel_scale, task.field_area,
                   size_factor=task.source.optics.cell_size,
                   density_factor=density_factor(task.source, task.shifts, edge))
    blur = task.source.optics.blur_sigma * task.pixel_scale
    clean = render_cells(m, task.image_size, task.pixel_scale, blur, rng)
    return expose(to_cell_painting(clean), task.source, task.shifts, edge, rng)


def run_plate(task: PlateTask) -> int:
    """Write all site images of a plate, then its load_data.csv; returns the sites written."""
    root = Path(task.root)
    folder = root / image_dir(task.plate)
    folder.mkdir(parents=True, exist_ok=True)
    for (well, _), effect in zip(task.plate.wells, task.effects):
        for site in range(1, task.sites + 1):
            image = render_site(task, well, np.asarray(effect), site)
            for channel, plane in zip(CHANNELS, image):
                write_image(folder / image_name(well, site, channel), plane)
    write_load_data(root, task.plate, task.sites)
    return len(task.plate.wells) * task.sites
