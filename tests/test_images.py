"""Decoding one site's PNGs: a file Pillow refuses is the site's reason for quarantine, never an
exception that stops the ingest (ingest itself: tests/test_ingest.py). No Ray."""

from __future__ import annotations

import numpy as np
from PIL import Image

from rxsweep.data.images import BadSite, decode_site


def _channels(tmp_path, n: int = 6, size: int = 64) -> list[str]:
    paths = []
    for c in range(n):
        path = tmp_path / f"B02_s1_w{c + 1}.png"
        Image.fromarray(np.full((size, size), 10 * c, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_a_decompression_bomb_quarantines_the_site_with_its_reason(tmp_path, monkeypatch):
    paths = _channels(tmp_path)
    assert decode_site(paths, str(tmp_path), size=64, resize_to=None).shape == (6, 64, 64)
    # Pillow refuses an image of more than 2 x MAX_IMAGE_PIXELS with DecompressionBombError; a
    # 64x64 file is one under a limit of 1,000 pixels.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000)
    bad = decode_site(paths, str(tmp_path), size=64, resize_to=None)
    assert isinstance(bad, BadSite) and bad.path == paths[0]
    assert "too large to be a site" in bad.reason and "decompression bomb" in bad.reason.lower()
