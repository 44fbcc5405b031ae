"""Render one site's clean 6-channel signal: a field of cells, each drawn only inside its bounding box.

Cells are drawn in chunks of similar size, each chunk as [k, B, B] numpy arrays (B = the chunk's
largest box), then added into a padded canvas: the cost is numpy work on about N*B*B pixels plus N
slice additions. Channels: 1 nucleus (elliptical, textured), 2 ER (perinuclear haze), 3 actin
(cortex ring + stress fibres), 4 nucleoli (spots in the nucleus), 5 mitochondria (granular
cytoplasm), 6 Golgi (a compact blob beside the nucleus).

The microscope's Gaussian focus blur (a batch effect) is applied analytically rather than by
convolving the finished image, which would cost more than rendering: edges soften by the blur
width, Gaussian blobs and texture fields widen (sigma^2 adds), and fibre stripes lose contrast by
the Gaussian's transfer function. Everything drawn is smooth on the blur scale otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from rxsweep.data import rxrx1_facts
from rxsweep.data.synth.biology import Morphology

_MAX_NUCLEOLI = 8
_CHUNK = 12  # cells per vectorised chunk: small enough that boxes fit their cells
# Planes accumulated per cell before the site-wide texture fields are applied:
# 0 nucleus, 1 nucleus x texture weight, 2 ER, 3 actin, 4 nucleoplasm (ch4 background), 5 mito, 6 Golgi.
_PLANES = 7
F32 = np.float32


def _texture(rng: np.random.Generator, size: int, grain: float, blur: float) -> np.ndarray:
    """A site-wide texture field: white noise smoothed to `grain` pixels, unit sd before the focus
    blur, which then widens it and lowers its sd by grain / sqrt(grain² + blur²) (as a real blur
    of the same texture would)."""
    sigma = float(np.hypot(grain, blur))
    field = ndimage.gaussian_filter(rng.standard_normal((size, size), dtype=F32), sigma, truncate=3.0)
    return field * F32(grain / sigma / max(float(field.std()), 1e-6))


def _ramp(distance: np.ndarray, radius: np.ndarray, softness: float) -> np.ndarray:
    """1 inside (normalised distance < 1), 0 outside, linear over `softness` pixels at the edge."""
    return np.clip((1.0 - distance) * (radius / softness) + 0.5, 0.0, 1.0)


def _draw_cells(m: Morphology, size: int, rng: np.random.Generator) -> SimpleNamespace:
    """Every random per-cell parameter, always drawn in this order (determinism)."""
    n = int(min(rng.poisson(max(m.cells, 0.0)), 4 * m.cells + 10))
    c = SimpleNamespace(n=n)
    c.radius = m.cell_radius * np.exp(rng.normal(0.0, 0.12, n))
    c.elong = 1.0 + (m.elongation - 1.0) * np.exp(rng.normal(0.0, 0.3, n))
    c.theta = rng.uniform(0.0, np.pi, n)
    c.harmonics = np.clip(rng.normal(0.0, m.irregularity, (3, n)), -0.2, 0.2)
    c.nuc_frac = np.clip(m.nucleus_fraction * np.exp(rng.normal(0.0, 0.1, n)), 0.15, 0.85)
    c.nuc_shift = rng.normal(0.0, 0.1, (2, n))
    brightness = np.exp(rng.normal(0.0, 0.15, n)[:, None] + rng.normal(0.0, 0.12, (n, 6)))
    c.intensity = m.intensity[None, :] * brightness  # [n, 6]
    c.golgi_angle = rng.uniform(0.0, 2 * np.pi, n)
    c.fibre_phase = rng.uniform(0.0, 2 * np.pi, n)
    c.centres = rng.uniform(0.0, size, (2, n))
    c.n_spots = np.minimum(rng.poisson(m.nucleoli, n), _MAX_NUCLEOLI)
    c.spot_uv = rng.uniform(-0.55, 0.55, (2, n, _MAX_NUCLEOLI))
    c.spot_w = rng.uniform(0.6, 1.2, (n, _MAX_NUCLEOLI))
    # Derived geometry: cell semi-axes (a along the long axis), nucleus semi-axes and centre.
    c.a, c.b = c.radius * np.sqrt(c.elong), c.radius / np.sqrt(c.elong)
    rn = c.nuc_frac * c.radius
    nuc_el = np.sqrt(1.0 + 0.5 * (c.elong - 1.0))
    c.an, c.bn = rn * nuc_el, rn / nuc_el
    c.u0, c.v0 = c.nuc_shift[0] * (c.a - c.an), c.nuc_shift[1] * (c.b - c.bn)
    c.extent = c.a * (1.0 + np.abs(c.harmonics).sum(axis=0))  # outline never reaches beyond this
    return c


def _chunk_planes(m: Morphology, c: SimpleNamespace, idx: np.ndarray, half: int, soft: float,
                  blur: float, pixel_scale: float) -> np.ndarray:
    """[7, k, B, B] planes of the cells `idx`, each centred in its box of half-width `half`."""
    col = lambda v: np.asarray(v[idx], dtype=F32)[:, None, None]  # noqa: E731  [n] -> [k, 1, 1]
    frac = c.centres - np.floor(c.centres)
    grid = np.arange(-half, half + 1, dtype=F32)
    dx = grid[None, None, :] - col(frac[0])
    dy = grid[None, :, None] - col(frac[1])
    cos_t, sin_t = col(np.cos(c.theta)), col(np.sin(c.theta))
    u = dx * cos_t + dy * sin_t  # along the cell's long axis
    v = dy * cos_t - dx * sin_t
    a, b = col(c.a), col(c.b)
    un, vn = u / a, v / b
    r2 = un * un + vn * vn + F32(1e-6)
    r = np.sqrt(r2)
    # Irregular outline: radius modulated by cos 2phi, sin 2phi, cos 3phi, written as polynomials in
    # (un, vn) so no atan2 is needed.
    h = c.harmonics
    wobble = 1.0 + (col(h[0]) * (un * un - vn * vn) + col(h[1]) * 2 * un * vn) / r2
    wobble += col(h[2]) * (un * (un * un - 3 * vn * vn)) / (r2 * r)
    d_cell = r / wobble
    body = _ramp(d_cell, b, soft)

    un_n, vn_n = (u - col(c.u0)) / col(c.an), (v - col(c.v0)) / col(c.bn)
    d_nuc = np.sqrt(un_n * un_n + vn_n * vn_n)
    nucleus = _ramp(d_nuc, col(c.bn), soft) * body
    dome = nucleus * (1.0 - 0.3 * np.minimum(d_nuc, 1.0) ** 2)

    beyond = np.maximum(d_nuc - 1.0, 0.0) / F32(m.er_width)
    er = body * (1.0 - 0.75 * nucleus) * np.exp(-0.5 * beyond * beyond)
    rim_width = max(1.0, 3.0 * pixel_scale) + blur
    rim = np.exp(-(((1.0 - np.minimum(d_cell, 1.0)) * b / F32(rim_width)) ** 2))
    wavelength = max(2.2, 5.0 * pixel_scale)
    contrast = m.actin_fibres * np.exp(-2.0 * (np.pi * blur / wavelength) ** 2)  # blurred cosine
    fibres = 1.0 + F32(contrast) * np.cos(F32(2 * np.pi / wavelength) * v + col(c.fibre_phase))
    actin = body * (0.35 + 0.65 * rim) * fibres
    mito = body * (1.0 - 0.85 * nucleus) * np.exp(-0.5 * (d_cell / F32(0.75)) ** 2)
    gu = c.u0 + 1.1 * c.an * np.cos(c.golgi_angle)
    gv = c.v0 + 1.1 * c.bn * np.sin(c.golgi_angle)
    g_var = np.maximum(c.nuc_frac * c.radius * m.golgi_spread, 0.6) ** 2
    g_peak = g_var / (g_var + blur**2)  # a blurred Gaussian keeps its mass: wider and lower
    g2 = (u - col(gu)) ** 2 + (v - col(gv)) ** 2
    golgi = np.exp(-g2 / col(2 * (g_var + blur**2))) * col(g_peak)

    planes = np.empty((_PLANES, *body.shape), dtype=F32)
    np.multiply(dome, col(c.intensity[:, 0]), out=planes[0])
    np.multiply(dome, col(c.intensity[:, 0] * m.texture), out=planes[1])
    np.multiply(er, col(c.intensity[:, 1]), out=planes[2])
    np.multiply(actin, col(c.intensity[:, 2]), out=planes[3])
    np.multiply(nucleus, col(0.2 * c.intensity[:, 3]), out=planes[4])
    np.multiply(mito, col(c.intensity[:, 4]), out=planes[5])
    np.multiply(golgi, col(c.intensity[:, 5]), out=planes[6])
    return planes


def render_cells(m: Morphology, size: int, pixel_scale: float, blur: float,
                 rng: np.random.Generator) -> np.ndarray:
    """The clean signal of a site, float32 [6, size, size], about 0..1 per channel inside cells.

    pixel_scale: output pixels per pixel of the real 512² field; blur: focus blur sd, output pixels.
    """
    c = _draw_cells(m, size, rng)
    soft = float(np.hypot(max(0.7, 1.5 * pixel_scale), blur))  # edge width in pixels
    pad = int(np.ceil(c.extent.max() + soft + 2)) if c.n else 1
    canvas = np.zeros((_PLANES, size + 2 * pad, size + 2 * pad), dtype=F32)
    ix, iy = np.floor(c.centres).astype(int)
    order = np.argsort(c.extent, kind="stable")  # chunks of similar size waste little box
    for start in range(0, c.n, _CHUNK):
        idx = order[start:start + _CHUNK]
        half = int(np.ceil(c.extent[idx].max() + soft + 1))
        planes = _chunk_planes(m, c, idx, half, soft, blur, pixel_scale)
        box = 2 * half + 1
        for j, cell in enumerate(idx):  # cheap: one slice addition of [7, box, box] per cell
            y0, x0 = iy[cell] + pad - half, ix[cell] + pad - half
            canvas[:, y0:y0 + box, x0:x0 + box] += planes[:, j]

    acc = canvas[:, pad:pad + size, pad:pad + size]
    out = np.empty((rxrx1_facts.N_CHANNELS, size, size), dtype=F32)
    texture = _texture(rng, size, max(0.7, 1.5 * pixel_scale), blur)
    granules = _texture(rng, size, max(0.6, 1.0 * pixel_scale), blur)
    out[0] = acc[0] + acc[1] * texture
    out[1] = acc[2]
    out[2] = acc[3]
    out[3] = acc[4] + _nucleoli(c, size, max(0.6, 1.3 * pixel_scale), blur)
    out[4] = acc[5] * (0.6 * np.maximum(1.0 + 0.8 * granules, 0.0))  # granules, mean about 0.6x
    out[5] = acc[6]
    return out


def _nucleoli(c: SimpleNamespace, size: int, spot_sigma: float, blur: float) -> np.ndarray:
    """Channel 4 spots: weighted points splatted bilinearly, then one Gaussian for all of them
    (spot size and focus blur together; the mass is the unblurred spot's, so blur dims them)."""
    spots = np.zeros((size + 1, size + 1), dtype=np.float64)
    sigma = float(np.hypot(spot_sigma, blur))
    if c.n:
        u = (c.u0[:, None] + c.spot_uv[0] * c.an[:, None])
        v = (c.v0[:, None] + c.spot_uv[1] * c.bn[:, None])
        cos_t, sin_t = np.cos(c.theta)[:, None], np.sin(c.theta)[:, None]
        x = c.centres[0][:, None] + u * cos_t - v * sin_t
        y = c.centres[1][:, None] + u * sin_t + v * cos_t
        w = c.spot_w * c.intensity[:, 3:4] * (2 * np.pi * spot_sigma**2)  # unblurred peak = brightness
        keep = np.arange(_MAX_NUCLEOLI)[None, :] < c.n_spots[:, None]
        keep &= (x >= 0) & (y >= 0) & (x < size - 1) & (y < size - 1)
        x, y, w = x[keep], y[keep], w[keep]
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        tx, ty = x - x0, y - y0
        for oy, ox, weight in ((0, 0, (1 - tx) * (1 - ty)), (0, 1, tx * (1 - ty)),
                               (1, 0, (1 - tx) * ty), (1, 1, tx * ty)):
            np.add.at(spots, (y0 + oy, x0 + ox), w * weight)
    return ndimage.gaussian_filter(spots[:size, :size], sigma, truncate=3.0).astype(F32)
