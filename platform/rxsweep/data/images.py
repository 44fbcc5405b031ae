"""Decoding one site's PNGs into a uint8 [C, H, W] array, or the reason it cannot be used.

A bad image is not an exception: it is a `BadSite(path, reason)` that ingest writes to quarantine.csv, so
one unreadable file among 125,000 never stops an ingest and never disappears silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow guards against decompression bombs at ~179 MP; RxRx1 images are 0.26 MP, so anything near
# that limit is not a microscopy image. Keep Pillow's default.


@dataclass(frozen=True)
class BadSite:
    path: str  # the offending file
    reason: str


def expected_mode(n_files: int) -> str:
    """One file a site means RGB (WILDS); several mean one 8-bit grey file per channel."""
    return "RGB" if n_files == 1 else "L"


def decode_site(paths: list[str], root: str, size: int | None, resize_to: int | None) -> np.ndarray | BadSite:
    """Read a site's PNGs into uint8 [C, H, W].

    `size` is the native edge length every image of the dataset must have (None: accept the first
    file's); `resize_to` resizes to that edge (box filter down, bilinear up). Paths whose real
    location is outside `root` (a symlink out) are refused.
    """
    mode = expected_mode(len(paths))
    channels = []
    for path in paths:
        real = os.path.realpath(path)
        if not real.startswith(root.rstrip(os.sep) + os.sep):
            return BadSite(path, f"resolves outside the data root, to {real}")
        try:
            with Image.open(path) as image:
                if image.mode != mode:
                    return BadSite(path, f"image mode {image.mode}, expected 8-bit {mode}")
                size = size or image.width  # the first channel fixes the size for the others
                if image.width != image.height or image.width != size:
                    want = f"{size}x{size}" if size else "square"
                    return BadSite(path, f"image is {image.width}x{image.height}, expected {want}")
                image.load()
                if resize_to is not None and resize_to != image.width:
                    method = Image.Resampling.BOX if resize_to < image.width else Image.Resampling.BILINEAR
                    image = image.resize((resize_to, resize_to), method)
                array = np.asarray(image)
        except FileNotFoundError:
            return BadSite(path, "image file missing")
        except Image.DecompressionBombError as exc:  # Pillow's guard (module comment above)
            return BadSite(path, f"image too large to be a site ({exc})")
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            # Pillow raises OSError for truncated files and SyntaxError/ValueError for broken chunks.
            return BadSite(path, f"image unreadable: {exc}")
        except Exception as exc:  # any other decoder error is this file's, not the ingest's
            return BadSite(path, f"image unreadable: {type(exc).__name__}: {exc}")
        channels.append(array.transpose(2, 0, 1) if array.ndim == 3 else array[None])
    return np.ascontiguousarray(np.concatenate(channels, axis=0), dtype=np.uint8)


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
