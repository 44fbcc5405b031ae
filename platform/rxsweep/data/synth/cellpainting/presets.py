"""Size presets of the synthetic JUMP-like Cell Painting world: every count in one frozen dataclass.

JUMP-cpg0016 is sources (laboratories, each with its own microscope) x batches x 384-well plates;
JUMP-Target plates hold every perturbation of a set once, so a treatment's replicates are the
plates, and about a sixth of a compound plate is DMSO. `tiny` keeps that shape at 64² and 48 imaged
wells a plate so the whole world renders in seconds on two cores; `small` is 256² for benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A 384-well plate: rows A-P, columns 01-24 (JUMP images the whole plate; no ring is left empty).
PLATE_ROWS = "ABCDEFGHIJKLMNOP"
PLATE_COLUMNS = tuple(range(1, 25))
WELLS_PER_PLATE = len(PLATE_ROWS) * len(PLATE_COLUMNS)  # 384


@dataclass(frozen=True)
class LoadDataPreset:
    """How big a synthetic Cell Painting world is. Every plate holds every treatment once, the
    positive controls `poscon_replicates` times each and DMSO in `negcon_wells` wells."""

    name: str
    #: Laboratories, `source_1`..`source_n`; each has its own microscope (the strongest batch level).
    sources: int
    #: Batches a source, `Batch1`..: runs of the same source on different days.
    batches_per_source: int
    #: Plates a batch; plates of one batch share one plate map.
    plates_per_batch: int
    #: Treatment compounds (pert_type trt, modality compound), each once a plate.
    compounds: int
    #: Treatment ORFs (pert_type trt, modality orf), each once a plate.
    orfs: int
    #: DMSO wells a plate (negcon), about 1/6 of the imaged wells as on JUMP compound plates.
    negcon_wells: int
    #: Positive-control compounds (pert_type poscon_cp), chosen for strong phenotypes.
    poscon_compounds: int
    #: Wells of each positive control a plate.
    poscon_replicates: int
    #: Imaged fields a well, numbered 1..n in Metadata_Site.
    sites_per_well: int
    #: Width = height of a site image in pixels, per channel.
    image_size: int
    #: Output pixels per pixel of RxRx1's 512² field (the renderer's unit): below 1 the cells
    #: shrink so a small image holds a field of cells instead of a crop of one or two.
    cell_scale: float
    #: Share of treatments with no phenotype at all (many JUMP compounds show none at 10 uM).
    null_fraction: float = 0.3
    #: Multiplies the phenotype magnitudes of biology.draw_phenotypes (RxRx1-tuned: mostly weak).
    phenotype_scale: float = 1.0

    def __post_init__(self) -> None:
        counts = (self.sources, self.batches_per_source, self.plates_per_batch, self.negcon_wells,
                  self.poscon_compounds, self.poscon_replicates, self.sites_per_well)
        if min(counts) < 1 or self.n_treatments < 1:
            raise ValueError(f"preset {self.name!r}: every count must be >= 1")
        if self.wells_per_plate > WELLS_PER_PLATE:
            raise ValueError(f"preset {self.name!r}: {self.wells_per_plate} wells > {WELLS_PER_PLATE}")
        if self.image_size < 16 or not 0 < self.cell_scale <= 2 or not 0 <= self.null_fraction <= 1:
            raise ValueError(f"preset {self.name!r}: image_size, cell_scale or null_fraction out of range")
        if self.phenotype_scale <= 0:
            raise ValueError(f"preset {self.name!r}: phenotype_scale must be > 0")

    @property
    def n_treatments(self) -> int:
        return self.compounds + self.orfs

    @property
    def n_classes(self) -> int:
        """Treatments + positive controls + DMSO."""
        return self.n_treatments + self.poscon_compounds + 1

    @property
    def wells_per_plate(self) -> int:
        return self.n_treatments + self.poscon_compounds * self.poscon_replicates + self.negcon_wells

    @property
    def n_plates(self) -> int:
        return self.sources * self.batches_per_source * self.plates_per_batch

    @property
    def n_sites(self) -> int:
        return self.n_plates * self.wells_per_plate * self.sites_per_well


LOADDATA_PRESETS: dict[str, LoadDataPreset] = {
    "tiny": LoadDataPreset(
        name="tiny", sources=6, batches_per_source=2, plates_per_batch=2,
        compounds=24, orfs=12, negcon_wells=8, poscon_compounds=2, poscon_replicates=2,
        sites_per_well=2, image_size=64, cell_scale=0.25, phenotype_scale=1.0,
    ),  # 24 plates x 48 wells x 2 sites = 2,304 sites, 39 classes
    "small": LoadDataPreset(
        name="small", sources=6, batches_per_source=3, plates_per_batch=2,
        compounds=48, orfs=24, negcon_wells=16, poscon_compounds=4, poscon_replicates=2,
        sites_per_well=2, image_size=256, cell_scale=0.5, phenotype_scale=1.0,
    ),  # 36 plates x 96 wells x 2 sites = 6,912 sites, 77 classes
}


def get_loaddata_preset(name: str) -> LoadDataPreset:
    """The preset called `name`; a ValueError lists the known ones."""
    try:
        return LOADDATA_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; known: {sorted(LOADDATA_PRESETS)}") from None
