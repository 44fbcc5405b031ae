"""Batch effects at three levels, source > batch > plate, and a 16-bit camera.

JUMP's sources are different laboratories with different microscopes, so a source changes the
most: per-channel gain, offset and gamma, the illumination field, focus blur, shot and read noise,
cell density and size, the camera's dark offset and counts per unit of light, and how much brighter
and denser edge wells are. A batch (another day at the same source) shifts gain, offset and
density a little; a plate less still. Each level's strength is a value in LEVELS, recorded in
truth.json with every drawn parameter.

The source's optics reuse batch.ExperimentBatch (over 5 channels) and its illumination field; batch
and plate shifts are batch.PlateShift draws scaled by their level. Imaging follows
batch.apply_batch's model, but ends in camera counts instead of 8 bits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rxsweep.data.synth import seeds
from rxsweep.data.synth.batch import ExperimentBatch, PlateShift, illumination
from rxsweep.data.synth.cellpainting.channels import CHANNELS
from rxsweep.data.synth.cellpainting.design import BATCH, PLATE, SOURCE

C = len(CHANNELS)


@dataclass(frozen=True)
class LevelStrength:
    gain_log_sd: float  # sd of the log of each channel's gain factor
    offset_sd: float  # sd of each channel's additive background, image units
    density_log_sd: float  # sd of the log of the cell-count factor


#: The three levels' strengths: each level about 3x weaker than the one above in gain.
LEVELS: dict[str, LevelStrength] = {
    "source": LevelStrength(gain_log_sd=0.35, offset_sd=0.02, density_log_sd=0.25),
    "batch": LevelStrength(gain_log_sd=0.12, offset_sd=0.008, density_log_sd=0.10),
    "plate": LevelStrength(gain_log_sd=0.04, offset_sd=0.003, density_log_sd=0.04),
}

#: Source-only draws (instrument properties), as batch.draw_experiment_batch's: uniform ranges...
SOURCE_UNIFORM: dict[str, tuple[float, float]] = {
    "blur_sigma": (0.5, 2.5),  # pixels of the 512² field
    "photons": (40.0, 400.0),  # drawn log-uniform
    "read_noise": (0.003, 0.015),
    "illumination_center": (0.3, 0.7),
    "vignetting": (0.1, 0.45),
    "edge_gain": (1.05, 1.2),
    "edge_density": (1.05, 1.3),
    "dark_offset": (100.0, 500.0),  # counts: a camera's bias differs by instrument
    "counts_per_unit": (2000.0, 3500.0),  # counts of one image unit (a bright cell ~ 1 unit)
}
#: ... and normal sds (of the log for gamma and cell size), and the mean background, image units.
SOURCE_SD: dict[str, float] = {"gamma_log": 0.15, "cell_size_log": 0.08, "gradient": 0.12}
SOURCE_OFFSET_MEAN = 0.04


@dataclass(frozen=True)
class Camera:
    dark_offset: float  # counts read with no light
    counts_per_unit: float  # counts of one image unit of signal


@dataclass(frozen=True)
class SourceEffect:
    optics: ExperimentBatch  # 5-channel gain/offset/gamma, blur, noise, density, illumination, edge
    camera: Camera

    def to_json(self) -> dict:
        return {"optics": self.optics.to_json(), "camera": asdict(self.camera)}


def _floats(values) -> tuple[float, ...]:
    return tuple(float(v) for v in np.atleast_1d(values))


def draw_source(seed: int, source: int) -> SourceEffect:
    """Source `source`'s instrument, from the stream (seed, SOURCE, source)."""
    rng, s = seeds.rng_for(seed, SOURCE, source), LEVELS["source"]
    uniform = lambda name, n=None: rng.uniform(*SOURCE_UNIFORM[name], n)  # noqa: E731
    optics = ExperimentBatch(
        gain=_floats(np.exp(rng.normal(0.0, s.gain_log_sd, C))),
        offset=_floats(np.maximum(SOURCE_OFFSET_MEAN + rng.normal(0.0, s.offset_sd, C), 0.0)),
        gamma=_floats(np.exp(rng.normal(0.0, SOURCE_SD["gamma_log"], C))),
        blur_sigma=float(uniform("blur_sigma")),
        photons=float(np.exp(rng.uniform(*np.log(SOURCE_UNIFORM["photons"])))),
        read_noise=float(uniform("read_noise")),
        density=float(np.exp(rng.normal(0.0, s.density_log_sd))),
        cell_size=float(np.exp(rng.normal(0.0, SOURCE_SD["cell_size_log"]))),
        illumination_center=_floats(uniform("illumination_center", 2)),
        vignetting=float(uniform("vignetting")),
        gradient=_floats(rng.normal(0.0, SOURCE_SD["gradient"], 2)),
        edge_gain=float(uniform("edge_gain")),
        edge_density=float(uniform("edge_density")),
    )
    return SourceEffect(optics, Camera(float(uniform("dark_offset")), float(uniform("counts_per_unit"))))


def _draw_shift(rng: np.random.Generator, level: LevelStrength) -> PlateShift:
    return PlateShift(
        gain=_floats(np.exp(rng.normal(0.0, level.gain_log_sd, C))),
        offset=_floats(rng.normal(0.0, level.offset_sd, C)),
        density=float(np.exp(rng.normal(0.0, level.density_log_sd))),
    )


def draw_batch_shift(seed: int, source: int, batch: int) -> PlateShift:
    return _draw_shift(seeds.rng_for(seed, BATCH, source, batch), LEVELS["batch"])


def draw_plate_shift(seed: int, key: tuple[int, int, int]) -> PlateShift:
    return _draw_shift(seeds.rng_for(seed, PLATE, *key), LEVELS["plate"])


def density_factor(source: SourceEffect, shifts: tuple[PlateShift, ...], edge: bool) -> float:
    """How many more cells than the biology's: all three levels, and the plate rim."""
    factor = source.optics.density * float(np.prod([s.density for s in shifts]))
    return factor * (source.optics.edge_density if edge else 1.0)


def expose(clean: np.ndarray, source: SourceEffect, shifts: tuple[PlateShift, ...], edge: bool,
           rng: np.random.Generator) -> np.ndarray:
    """Image a clean [5, H, W] float32 signal (already blurred): illumination, detector response,
    gains and offsets of the three levels, shot + read noise, camera counts. Returns uint16 [5, H, W]:
    the dark offset plus up to a few thousand counts of signal, as a real 16-bit camera gives.

    Noise as batch.apply_batch: one Gaussian draw with Poisson-like variance.
    """
    optics = source.optics
    x = np.maximum(clean * illumination(optics, clean.shape[-1])[None], 0.0)
    x **= np.asarray(optics.gamma, dtype=np.float32)[:, None, None]
    gain = np.asarray(optics.gain) * np.prod([s.gain for s in shifts], axis=0)
    gain = gain * (optics.edge_gain if edge else 1.0)
    offset = np.asarray(optics.offset) + np.sum([s.offset for s in shifts], axis=0)
    signal = gain.astype(np.float32)[:, None, None] * x
    sd = np.sqrt(signal * np.float32(1.0 / optics.photons) + np.float32(optics.read_noise**2))
    y = signal + offset.astype(np.float32)[:, None, None]
    y += sd * rng.standard_normal(y.shape, dtype=np.float32)
    counts = np.float32(source.camera.dark_offset) + np.float32(source.camera.counts_per_unit) * y
    return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
