"""Synthetic JUMP-like Cell Painting: rendered cells under three levels of batch effects (source >
batch > plate), written as CellProfiler LoadData CSVs, a plate map and 16-bit TIFFs.

`generate_loaddata(out, preset, seed)` writes the world into `out` (the data root) and
OUT.truth.json beside it with every generator parameter. It reuses the RxRx1 generator's renderer
(render.py), biology (biology.py: U2OS, phenotype draws), seeded streams (seeds.py) and batch model
(batch.py). Modules, one concern each: presets (sizes), design (JCP2022 perturbations, sources,
batches, plates, plate maps), channels (the 6 rendered channels -> DNA, ER, RNA, AGP, Mito),
nuisance (the three batch levels and the 16-bit camera), job (one plate's work), layout (files),
truth (truth.json), generator (orchestration: generate_loaddata()).
"""

from rxsweep.data.synth.cellpainting.generator import LOADDATA_GENERATOR_VERSION, generate_loaddata
from rxsweep.data.synth.cellpainting.presets import LOADDATA_PRESETS, LoadDataPreset

__all__ = ["LOADDATA_GENERATOR_VERSION", "LOADDATA_PRESETS", "LoadDataPreset", "generate_loaddata"]
