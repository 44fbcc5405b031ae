"""Biology of the synthetic cells: per-cell-type baseline morphology and per-siRNA phenotypes.

A phenotype is an effect vector over PHENOTYPE_PARAMS, mostly in log units (0.3 = about x1.35).
About half the treatments are null (as in RxRx1, where many siRNAs show no visible phenotype), most
others are weak, a few strong; positive controls are strong; the untreated well is the baseline.
The strength of a phenotype varies by cell type, and around that by experiment (interaction.py,
applied on top of Phenotypes.effect by the generator). Batch effects (batch.py) are made larger
than this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rxsweep.data.synth import seeds
from rxsweep.data.synth.plate_map import Sirna

#: What a phenotype can change. intensity_* are per-channel brightness (channels 1-6).
PHENOTYPE_PARAMS: tuple[str, ...] = (
    "cell_size",
    "nucleus_size",
    "elongation",
    "intensity_nucleus",
    "intensity_er",
    "intensity_actin",
    "intensity_nucleoli",
    "intensity_mitochondria",
    "intensity_golgi",
    "nucleoli_count",
    "texture",
    "density",
    "golgi_spread",
    "actin_fibres",
)
N_PARAMS = len(PHENOTYPE_PARAMS)
P = {name: i for i, name in enumerate(PHENOTYPE_PARAMS)}


@dataclass(frozen=True)
class CellTypeBiology:
    """Baseline morphology of a cell type, in pixels of the real 512² field."""

    cell_radius: float  # mean cell radius
    elongation: float  # mean major/minor axis ratio of the cell body
    irregularity: float  # sd of the 2nd/3rd angular harmonics of the outline
    nucleus_fraction: float  # nucleus radius / cell radius
    density: float  # mean cells in a 512² field
    intensity: tuple[float, float, float, float, float, float]  # channel 1-6 brightness
    nucleoli: float  # mean nucleoli a nucleus
    texture: float  # amplitude of chromatin texture in the nucleus
    golgi_spread: float  # Golgi blob sd / nucleus radius
    actin_fibres: float  # stress-fibre modulation depth 0..1
    er_width: float  # ER extent beyond the nucleus, in nucleus radii


# Endothelial HUVEC: elongated, fibrous; RPE: cobblestone epithelium; HEPG2: small, crowded, big
# nuclei; U2OS: large flat cells. Numbers are plausible, not measured.
CELL_TYPE_BIOLOGY: dict[str, CellTypeBiology] = {
    "HUVEC": CellTypeBiology(22.0, 1.9, 0.08, 0.42, 70.0, (0.55, 0.35, 0.45, 0.30, 0.40, 0.50),
                             2.5, 0.25, 0.35, 0.45, 1.1),
    "RPE": CellTypeBiology(21.0, 1.25, 0.10, 0.40, 80.0, (0.50, 0.45, 0.35, 0.40, 0.35, 0.40),
                           3.0, 0.20, 0.30, 0.25, 1.3),
    "HEPG2": CellTypeBiology(16.0, 1.15, 0.12, 0.52, 100.0, (0.60, 0.50, 0.30, 0.35, 0.50, 0.35),
                             3.5, 0.30, 0.28, 0.10, 0.9),
    "U2OS": CellTypeBiology(29.0, 1.5, 0.12, 0.34, 40.0, (0.45, 0.40, 0.50, 0.30, 0.45, 0.45),
                            2.0, 0.18, 0.40, 0.55, 1.5),
}
assert tuple(CELL_TYPE_BIOLOGY) == seeds.CELL_TYPES


@dataclass(frozen=True)
class Phenotypes:
    """Effect vectors of every label: effect(sirna_id, cell type) = vector * cell_type_scale."""

    vectors: np.ndarray  # [n_classes, N_PARAMS] float64
    strength: np.ndarray  # [n_classes] norm of the vector (0 for null siRNAs and EMPTY)
    cell_type_scale: np.ndarray  # [n_classes, n_cell_types], > 0

    def effect(self, sirna_id: int, cell_type: str) -> np.ndarray:
        return self.vectors[sirna_id] * self.cell_type_scale[sirna_id, seeds.CELL_TYPES.index(cell_type)]


def draw_phenotypes(sirnas: tuple[Sirna, ...], null_fraction: float, seed: int) -> Phenotypes:
    """One sparse effect vector per label, each from its own stream (seed, PHENOTYPE, sirna_id)."""
    n = len(sirnas)
    vectors = np.zeros((n, N_PARAMS))
    strength = np.zeros(n)
    scale = np.ones((n, len(seeds.CELL_TYPES)))
    for s in sirnas:
        rng = seeds.rng_for(seed, seeds.PHENOTYPE, s.sirna_id)
        null_draw, size_draw = rng.random(), rng.exponential(0.35)
        if s.well_type == "negative_control":
            continue  # untreated: the baseline, by definition
        if s.well_type == "treatment":
            if null_draw < null_fraction:
                continue
            magnitude = 0.15 + size_draw  # mostly weak (0.15-0.5), a tail of strong ones
        else:
            magnitude = 0.9 + 0.5 * rng.random()  # positive controls: chosen for strong phenotypes
        k = int(rng.integers(2, 5))  # a phenotype touches a few parameters, not all
        params = rng.choice(N_PARAMS, size=k, replace=False)
        direction = rng.normal(size=k)
        vectors[s.sirna_id, params] = magnitude * direction / np.linalg.norm(direction)
        strength[s.sirna_id] = magnitude
        scale[s.sirna_id] = np.exp(rng.normal(0.0, 0.3, size=len(seeds.CELL_TYPES)))
    return Phenotypes(vectors, strength, scale)


@dataclass(frozen=True)
class Morphology:
    """Mean cell parameters of one well, in output pixels, after phenotype and batch effects."""

    cell_radius: float
    elongation: float
    irregularity: float
    nucleus_fraction: float
    cells: float  # expected cells in the site
    intensity: np.ndarray  # [6]
    nucleoli: float
    texture: float
    golgi_spread: float
    actin_fibres: float
    er_width: float


def morphology(
    bio: CellTypeBiology, effect: np.ndarray, pixel_scale: float, field_area: float,
    size_factor: float, density_factor: float,
) -> Morphology:
    """Combine a cell type's baseline with an siRNA effect vector.

    pixel_scale: output pixels per pixel of the real 512² field; field_area: the site's area in units
    of that field; size_factor/density_factor: multiplicative batch effects on cell size and count.
    """
    e = effect
    intensities = np.asarray(bio.intensity) * np.exp(e[P["intensity_nucleus"]:P["intensity_golgi"] + 1])
    return Morphology(
        cell_radius=bio.cell_radius * pixel_scale * size_factor * np.exp(e[P["cell_size"]]),
        elongation=1.0 + (bio.elongation - 1.0) * np.exp(1.5 * e[P["elongation"]]),
        irregularity=bio.irregularity,
        nucleus_fraction=float(np.clip(bio.nucleus_fraction * np.exp(e[P["nucleus_size"]]), 0.2, 0.8)),
        cells=bio.density * field_area * density_factor * np.exp(e[P["density"]]),
        intensity=intensities,
        nucleoli=bio.nucleoli * np.exp(1.5 * e[P["nucleoli_count"]]),
        texture=float(np.clip(bio.texture + 0.5 * e[P["texture"]], 0.0, 0.8)),
        golgi_spread=bio.golgi_spread * np.exp(1.5 * e[P["golgi_spread"]]),
        actin_fibres=float(np.clip(bio.actin_fibres + 0.8 * e[P["actin_fibres"]], 0.0, 0.95)),
        er_width=bio.er_width,
    )
