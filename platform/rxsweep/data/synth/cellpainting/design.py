"""The experimental design of a synthetic JUMP-like world: perturbations with JCP2022 ids, sources,
batches and plates, and the plate maps (which perturbation sits in which well).

Perturbations are indexed as labels: treatments (compounds, then ORFs) 0..T-1, positive controls
T..T+P-1, DMSO last. Every plate holds every treatment once, each positive control
`poscon_replicates` times and DMSO in `negcon_wells` wells. The imaged well positions are the
dataset's (one draw from the 384); each batch deals its perturbations onto them in its own order
and its plates share that map, so a well-position effect is confounded with a treatment within a
batch but not across batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rxsweep.data.synth import seeds
from rxsweep.data.synth.cellpainting.presets import PLATE_COLUMNS, PLATE_ROWS, LoadDataPreset
from rxsweep.data.synth.plate_map import Sirna

# Stream tags of this world's draws, apart from seeds.py's RxRx1 tags (1-6) so the two generators'
# streams can never alias. Values are part of the output's identity: never renumber them.
DESIGN = 101  # JCP ids, imaged positions, each batch's plate map
SOURCE = 102  # one source's microscope
BATCH = 103  # one batch's shift
PLATE = 104  # one plate's shift
SITE = 105  # the cells and noise of one site

DMSO_JCP = "JCP2022_033924"  # JUMP's id of DMSO
ALL_WELLS: tuple[str, ...] = tuple(f"{r}{c:02d}" for r in PLATE_ROWS for c in PLATE_COLUMNS)
_COMPOUND_IDS = (1, 116_000)  # JUMP compounds are JCP2022_000001..~116k
_ORF_IDS = (900_000, 916_000)  # JUMP ORFs sit at JCP2022_9xxxxx
# draw_phenotypes speaks RxRx1 well types; this is how our pert types map onto them.
_WELL_TYPE = {"trt": "treatment", "poscon_cp": "positive_control", "negcon": "negative_control"}


@dataclass(frozen=True)
class Perturbation:
    index: int  # label id, see the module docstring
    jcp: str  # 'JCP2022_' + 6 digits
    pert_type: str  # trt | poscon_cp | negcon
    modality: str  # compound | orf


@dataclass(frozen=True)
class PlatePlan:
    source: str  # 'source_1'
    batch: str  # 'Batch1'
    plate: str  # barcode 'S1B1P01', [A-Za-z0-9] only
    key: tuple[int, int, int]  # (source, batch, plate) numbers, 1-based: the plate's stream key
    wells: tuple[tuple[str, int], ...]  # (well, perturbation index), sorted by well


@dataclass(frozen=True)
class Design:
    perturbations: tuple[Perturbation, ...]  # indexed by Perturbation.index
    wells: tuple[str, ...]  # the imaged positions, sorted
    plates: tuple[PlatePlan, ...]  # in (source, batch, plate) order


def is_edge_well(well: str) -> bool:
    """True on the plate's outer ring (rows A/P, columns 01/24), where evaporation acts."""
    row, col = well[0], int(well[1:])
    return row in (PLATE_ROWS[0], PLATE_ROWS[-1]) or col in (PLATE_COLUMNS[0], PLATE_COLUMNS[-1])


def _jcp_ids(rng: np.random.Generator, n: int, bounds: tuple[int, int]) -> list[str]:
    numbers = rng.choice(np.arange(*bounds), size=n + 1, replace=False)
    numbers = [int(x) for x in numbers if f"JCP2022_{x:06d}" != DMSO_JCP][:n]
    return [f"JCP2022_{x:06d}" for x in numbers]


def make_perturbations(spec: LoadDataPreset, seed: int) -> tuple[Perturbation, ...]:
    """Treatments (compounds, ORFs), positive controls, DMSO; distinct JCP ids drawn like JUMP's."""
    rng = seeds.rng_for(seed, DESIGN, 0)
    compound_ids = _jcp_ids(rng, spec.compounds + spec.poscon_compounds, _COMPOUND_IDS)
    orf_ids = _jcp_ids(rng, spec.orfs, _ORF_IDS)
    kinds = ([("trt", "compound")] * spec.compounds + [("trt", "orf")] * spec.orfs
             + [("poscon_cp", "compound")] * spec.poscon_compounds + [("negcon", "compound")])
    ids = compound_ids[:spec.compounds] + orf_ids + compound_ids[spec.compounds:] + [DMSO_JCP]
    return tuple(Perturbation(i, jcp, t, m) for i, (jcp, (t, m)) in enumerate(zip(ids, kinds)))


def as_labels(perturbations: tuple[Perturbation, ...]) -> tuple[Sirna, ...]:
    """The perturbations as biology.draw_phenotypes expects its labels (only id and type are read)."""
    return tuple(Sirna(p.index, p.jcp, _WELL_TYPE[p.pert_type], None) for p in perturbations)


def plate_contents(spec: LoadDataPreset, perturbations: tuple[Perturbation, ...]) -> list[int]:
    """The perturbation index of every imaged well of a plate, before placement."""
    by_type = {t: [p.index for p in perturbations if p.pert_type == t] for t in _WELL_TYPE}
    return (by_type["trt"] + by_type["poscon_cp"] * spec.poscon_replicates
            + by_type["negcon"] * spec.negcon_wells)


def plate_barcode(source: int, batch: int, plate: int) -> str:
    """(1, 1, 1) -> 'S1B1P01': unique across the dataset, letters and digits only."""
    return f"S{source}B{batch}P{plate:02d}"


def make_design(spec: LoadDataPreset, seed: int) -> Design:
    """The whole design of `spec` under `seed`; a pure function of both."""
    perturbations = make_perturbations(spec, seed)
    contents = plate_contents(spec, perturbations)
    positions = seeds.rng_for(seed, DESIGN, 1).choice(len(ALL_WELLS), size=len(contents), replace=False)
    wells = tuple(ALL_WELLS[i] for i in sorted(positions))
    plates = []
    for s in range(1, spec.sources + 1):
        for b in range(1, spec.batches_per_source + 1):
            order = seeds.rng_for(seed, DESIGN, 2, s, b).permutation(len(contents))
            plate_map = tuple(sorted(zip(wells, (contents[i] for i in order))))
            plates += [PlatePlan(f"source_{s}", f"Batch{b}", plate_barcode(s, b, p), (s, b, p), plate_map)
                       for p in range(1, spec.plates_per_batch + 1)]
    return Design(perturbations, wells, tuple(plates))
