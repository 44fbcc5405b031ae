"""Batch effects: what the microscope, the day and the plate do to an image, on purpose stronger
than the biology (as in RxRx1, where experiments cluster before siRNAs do).

Per experiment: channel gain, offset and gamma, an illumination field (vignetting + gradient),
Gaussian blur, shot and read noise, cell density and size. Per plate: smaller gain/offset/density
shifts. Per well position: edge wells are brighter and denser (evaporation at the plate rim).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from rxsweep.data import rxrx1_facts
from rxsweep.data.synth import seeds

C = rxrx1_facts.N_CHANNELS


@dataclass(frozen=True)
class ExperimentBatch:
    gain: tuple[float, ...]  # per channel, multiplies the signal
    offset: tuple[float, ...]  # per channel, added (background), in [0, 1] image units
    gamma: tuple[float, ...]  # per channel, detector response exponent
    blur_sigma: float  # Gaussian focus blur sd, pixels of the 512² field (applied in render.py)
    photons: float  # photons per unit of output signal: lower = stronger shot noise
    read_noise: float  # Gaussian noise sd, image units
    density: float  # multiplies the cell count
    cell_size: float  # multiplies the cell radius (confluence changes spreading)
    illumination_center: tuple[float, float]  # vignetting centre, fraction of the field (x, y)
    vignetting: float  # relative fall-off at the field corner
    gradient: tuple[float, float]  # linear illumination slope across the field (x, y)
    edge_gain: float  # brightness factor of edge wells
    edge_density: float  # cell-count factor of edge wells

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlateShift:
    gain: tuple[float, ...]  # per channel factor
    offset: tuple[float, ...]  # per channel, added
    density: float

    def to_json(self) -> dict:
        return asdict(self)


def _floats(values: np.ndarray) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def draw_experiment_batch(seed: int, key: tuple[int, int]) -> ExperimentBatch:
    """An experiment's batch parameters, from the stream (seed, BATCH, key)."""
    rng = seeds.rng_for(seed, seeds.BATCH, *key)
    return ExperimentBatch(
        gain=_floats(0.8 * np.exp(rng.normal(0.0, 0.35, C))),
        offset=_floats(rng.uniform(0.01, 0.09, C)),
        gamma=_floats(np.exp(rng.normal(0.0, 0.15, C))),
        blur_sigma=float(rng.uniform(0.5, 2.5)),
        photons=float(np.exp(rng.uniform(np.log(40.0), np.log(400.0)))),
        read_noise=float(rng.uniform(0.003, 0.015)),
        density=float(np.exp(rng.normal(0.0, 0.25))),
        cell_size=float(np.exp(rng.normal(0.0, 0.08))),
        illumination_center=_floats(rng.uniform(0.3, 0.7, 2)),
        vignetting=float(rng.uniform(0.1, 0.45)),
        gradient=_floats(rng.normal(0.0, 0.12, 2)),
        edge_gain=float(rng.uniform(1.05, 1.2)),
        edge_density=float(rng.uniform(1.05, 1.3)),
    )


def draw_plate_shift(seed: int, key: tuple[int, int], plate: int) -> PlateShift:
    """A plate's shift; its own stream so plate shifts don't depend on the plate map draws."""
    rng = seeds.rng_for(seed, seeds.BATCH, *key, plate)
    return PlateShift(
        gain=_floats(np.exp(rng.normal(0.0, 0.06, C))),
        offset=_floats(rng.normal(0.0, 0.006, C)),
        density=float(np.exp(rng.normal(0.0, 0.08))),
    )


def illumination(batch: ExperimentBatch, size: int) -> np.ndarray:
    """[size, size] float32 field around 1: radial vignetting from a shifted centre plus a gradient."""
    t = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = t[None, :], t[:, None]
    cx, cy = batch.illumination_center
    r2 = ((x - cx) ** 2 + (y - cy) ** 2) / 0.5  # ~1 at the far corner
    gx, gy = batch.gradient
    field = 1.0 - batch.vignetting * r2 + gx * (x - 0.5) + gy * (y - 0.5)
    return np.clip(field, 0.2, None).astype(np.float32)


def apply_batch(
    clean: np.ndarray, batch: ExperimentBatch, shift: PlateShift, edge: bool, rng: np.random.Generator,
) -> np.ndarray:
    """Image a clean [6, H, W] float32 signal (already blurred, see render.py): illumination,
    detector response, shot + read noise, 8-bit quantisation. Returns uint8 [6, H, W].

    Noise is one Gaussian draw with Poisson-like variance, gain * signal / photons + read_noise^2,
    in output units: cheaper than a Poisson draw and a second Gaussian, and equivalent at these counts.
    """
    size = clean.shape[-1]
    x = np.maximum(clean * illumination(batch, size)[None], 0.0)
    x **= np.asarray(batch.gamma, dtype=np.float32)[:, None, None]
    gain = np.asarray(batch.gain) * np.asarray(shift.gain) * (batch.edge_gain if edge else 1.0)
    offset = np.asarray(batch.offset) + np.asarray(shift.offset)
    signal = gain.astype(np.float32)[:, None, None] * x
    sd = np.sqrt(signal * np.float32(1.0 / batch.photons) + np.float32(batch.read_noise**2))
    y = signal + offset.astype(np.float32)[:, None, None]
    y += sd * rng.standard_normal(y.shape, dtype=np.float32)
    return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)
