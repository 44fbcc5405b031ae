"""Decoding one site's images (PNGs, or 16-bit TIFFs) into a uint8 [C, H, W] array, or the reason it cannot be used.

A bad image is not an exception: it is a `BadSite(path, reason)` that ingest writes to quarantine.csv, so
one unreadable file among 125,000 never stops an ingest and never disappears silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from rxsweep.data import tiff_images

# Pillow guards against decompression bombs at ~179 MP; RxRx1 images are 0.26 MP, so anything near
# that limit is not a microscopy image. Keep Pillow's default.


@dataclass(frozen=True)
class BadSite:
    path: str  # the offending file
    reason: str


def expected_mode(n_files: int) -> str:
    """One file a site means RGB (WILDS); several mean one 8-bit grey file per channel."""
    return "RGB" if n_files == 1 else "L"


def decode_site(paths: list[str], root: str, size: int | None, resize_to: int | None,
                intensity_range: tuple[list[float], list[float]] | None = None) -> np.ndarray | BadSite:
    """Read a site's images into uint8 [C, H, W].

    `size` is the native edge length every image of the dataset must have (None: accept the first
    file's); `resize_to` resizes to that edge (box filter down, bilinear up). Paths whose real
    location is outside `root` (a symlink out) are refused. 16-bit TIFFs (one a channel) are
    scaled to uint8 by `intensity_range` = (lo, hi), one value a channel (tiff_images.py; None:
    the full range of the file's type).
    """
    channels = []
    for channel, path in enumerate(paths):
        real = os.path.realpath(path)
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            return BadSite(path, f"resolves outside the data root, to {real}")
        if tiff_images.is_tiff(path):
            decoded = _decode_tiff(path, size, resize_to, intensity_range, channel)
        else:
            decoded = _decode_png(path, expected_mode(len(paths)), size, resize_to)
        if isinstance(decoded, BadSite):
            return decoded
        array, size = decoded  # the first channel's native size fixes the others'
        channels.append(array.transpose(2, 0, 1) if array.ndim == 3 else array[None])
    return np.ascontiguousarray(np.concatenate(channels, axis=0), dtype=np.uint8)


def _decode_png(path: str, mode: str, size: int | None, resize_to: int | None) -> tuple[np.ndarray, int] | BadSite:
    try:
        with Image.open(path) as image:
            if image.mode != mode:
                return BadSite(path, f"image mode {image.mode}, expected 8-bit {mode}")
            bad = _bad_size(path, image.width, image.height, size)
            if bad:
                return bad
            image.load()
            return np.asarray(_resized(image, resize_to)), image.width
    except Exception as exc:  # noqa: BLE001 - every decoder error is this file's (_unreadable)
        return _unreadable(path, exc)


def _decode_tiff(path: str, size: int | None, resize_to: int | None,
                 intensity_range: tuple[list[float], list[float]] | None, channel: int) -> tuple[np.ndarray, int] | BadSite:
    try:
        plane = tiff_images.read_grey(path)
    except Exception as exc:  # noqa: BLE001 - tifffile raises many types for a truncated or foreign file
        return _unreadable(path, exc)
    bad = _bad_size(path, plane.shape[1], plane.shape[0], size)
    if bad:
        return bad
    lo, hi = (intensity_range[0][channel], intensity_range[1][channel]) if intensity_range else (0, np.iinfo(plane.dtype).max)
    return np.asarray(_resized(Image.fromarray(tiff_images.to_uint8(plane, lo, hi)), resize_to)), plane.shape[1]


def _bad_size(path: str, width: int, height: int, size: int | None) -> BadSite | None:
    if width != height or (size is not None and width != size):
        want = f"{size}x{size}" if size else "square"
        return BadSite(path, f"image is {width}x{height}, expected {want}")
    return None


def _resized(image: Image.Image, resize_to: int | None) -> Image.Image:
    if resize_to is None or resize_to == image.width:
        return image
    method = Image.Resampling.BOX if resize_to < image.width else Image.Resampling.BILINEAR
    return image.resize((resize_to, resize_to), method)


def _unreadable(path: str, exc: Exception) -> BadSite:
    if isinstance(exc, FileNotFoundError):
        return BadSite(path, "image file missing")
    if isinstance(exc, Image.DecompressionBombError):  # Pillow's guard (module comment above)
        return BadSite(path, f"image too large to be a site ({exc})")
    if isinstance(exc, (UnidentifiedImageError, OSError, SyntaxError, ValueError)):
        # Pillow raises OSError for truncated files and SyntaxError/ValueError for broken chunks.
        return BadSite(path, f"image unreadable: {exc}")
    return BadSite(path, f"image unreadable: {type(exc).__name__}: {exc}")


def probe_native_size(paths_of_sites: list[list[str]], root: str, tries: int = 32) -> int:
    """The edge length of the dataset's images, from the first site that decodes."""
    reasons = []
    for paths in paths_of_sites[:tries]:
        decoded = decode_site(paths, root, size=None, resize_to=None)
        if not isinstance(decoded, BadSite):
            return int(decoded.shape[-1])
        reasons.append(decoded.reason)
    raise ValueError(
        f"none of the first {min(tries, len(paths_of_sites))} sites could be decoded "
        f"(e.g. {reasons[:3]}): check the data root and the layout"
    )
