"""truth.json of the Cell Painting world: every parameter the generator drew, so analyses can score
against the ground truth (which treatments are null and how strong the others are, how strong each
batch level is and what each source, batch and plate drew).

Top-level keys: identity (added by the generator), preset, geometry, cell_type, cell_type_biology,
channels, channel_map, phenotype_params, levels (the strength of each batch level: source, batch,
plate), source_draws (the ranges of the instrument-only draws), sources (each source's instrument,
its batches' shifts and their plates' shifts), design (imaged wells, and each plate's well ->
JCP2022 id), controls (wells a plate by pert type and their shares), perturbations (id, type,
modality, null, strength, effect vector in U2OS exactly as rendered; strength is its norm, 0 for
null ones).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import numpy as np

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth.batch import PlateShift
from rxsweep.data.synth.biology import CELL_TYPE_BIOLOGY, PHENOTYPE_PARAMS
from rxsweep.data.synth.cellpainting.channels import CHANNEL_MAP, CHANNELS
from rxsweep.data.synth.cellpainting.design import Design
from rxsweep.data.synth.cellpainting.nuisance import (
    LEVELS, SOURCE_OFFSET_MEAN, SOURCE_SD, SOURCE_UNIFORM, SourceEffect,
)
from rxsweep.data.synth.cellpainting.presets import LoadDataPreset


def _sources(design: Design, sources: dict[str, SourceEffect],
             shifts: dict[tuple[str, ...], PlateShift]) -> list[dict]:
    """Per source: its instrument; per batch its shift; per plate its shift (nested as the data)."""
    out: dict[str, dict] = {}
    for plate in design.plates:
        src = out.setdefault(plate.source, {"name": plate.source, "effect": sources[plate.source].to_json(),
                                            "batches": {}})
        batch = src["batches"].setdefault(plate.batch, {
            "name": plate.batch, "shift": shifts[(plate.source, plate.batch)].to_json(), "plates": {}})
        batch["plates"][plate.plate] = {"shift": shifts[(plate.source, plate.batch, plate.plate)].to_json()}
    return list(out.values())


def _controls(design: Design) -> dict:
    """Wells a plate by pert type (every plate has the same contents) and their shares."""
    plate = design.plates[0]
    counts = Counter(design.perturbations[i].pert_type for _, i in plate.wells)
    n = len(plate.wells)
    return {"wells_per_plate": n, "wells": dict(sorted(counts.items())),
            "fraction": {t: c / n for t, c in sorted(counts.items())}}


def build_truth(spec: LoadDataPreset, design: Design, effects: dict[int, tuple[float, ...]],
                sources: dict[str, SourceEffect], shifts: dict[tuple[str, ...], PlateShift],
                cell_type: str, geometry: dict[str, float]) -> dict:
    """The JSON-ready record of a generation but its identity (the generator adds that).

    effects: each perturbation's effect vector exactly as rendered (in `cell_type`, times the
    preset's phenotype_scale); shifts: by (source, batch) and (source, batch, plate)."""
    perturbations = [{
        "index": p.index, "jcp2022": p.jcp, "pert_type": p.pert_type, "modality": p.modality,
        "null": bool(p.pert_type == "trt" and not any(effects[p.index])),
        "strength": float(np.linalg.norm(effects[p.index])), "effect": list(effects[p.index]),
    } for p in design.perturbations]
    return {
        "preset": {**asdict(spec), "n_classes": spec.n_classes, "n_plates": spec.n_plates,
                   "n_sites": spec.n_sites, "wells_per_plate": spec.wells_per_plate},
        "geometry": geometry,
        "cell_type": cell_type,
        "cell_type_biology": asdict(CELL_TYPE_BIOLOGY[cell_type]),
        "channels": list(CHANNELS),
        "channel_map": {name: {rxrx1_facts.CHANNELS[ch - 1]: w for ch, w in m.items()}
                        for name, m in CHANNEL_MAP.items()},
        "phenotype_params": list(PHENOTYPE_PARAMS),
        "levels": {level: asdict(strength) for level, strength in LEVELS.items()},
        "source_draws": {"uniform": SOURCE_UNIFORM, "sd": SOURCE_SD, "offset_mean": SOURCE_OFFSET_MEAN},
        "sources": _sources(design, sources, shifts),
        "design": {
            "imaged_wells": list(design.wells),
            "plates": [{"source": p.source, "batch": p.batch, "plate": p.plate,
                        "wells": {w: design.perturbations[i].jcp for w, i in p.wells}}
                       for p in design.plates],
        },
        "controls": _controls(design),
        "perturbations": perturbations,
    }
