"""Cell Painting's five channels, made from the renderer's six RxRx1-like ones.

render.render_cells draws 1 nucleus, 2 ER, 3 actin, 4 nucleoli (+ nucleoplasm), 5 mitochondria,
6 Golgi. Cell Painting images DNA (Hoechst), ER (concanavalin A), RNA (SYTO 14: nucleoli and
nucleoplasm), AGP (phalloidin + wheat-germ agglutinin: actin, Golgi, plasma membrane) and Mito
(MitoTracker): one stain a renderer channel, except AGP, which two stains share.
"""

from __future__ import annotations

import numpy as np

#: Channel names in JUMP's order; LoadData columns are FileName_Orig<name>, PathName_Orig<name>.
CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")

#: The mapping, in one place: Cell Painting channel -> {renderer channel (1-based): weight}.
#: AGP sums actin and Golgi, scaled by 0.75 so its brightness stays like the other channels' (the
#: Golgi blob is bright where it overlaps the actin cortex); the camera clips what exceeds its range.
CHANNEL_MAP: dict[str, dict[int, float]] = {
    "DNA": {1: 1.0},
    "ER": {2: 1.0},
    "RNA": {4: 1.0},
    "AGP": {3: 0.75, 6: 0.75},
    "Mito": {5: 1.0},
}
assert tuple(CHANNEL_MAP) == CHANNELS

_MIX = np.zeros((len(CHANNELS), 6), dtype=np.float32)
for _row, _name in enumerate(CHANNELS):
    for _ch, _w in CHANNEL_MAP[_name].items():
        _MIX[_row, _ch - 1] = _w


def to_cell_painting(clean: np.ndarray) -> np.ndarray:
    """Renderer signal float32 [6, H, W] -> Cell Painting signal float32 [5, H, W]."""
    return np.tensordot(_MIX, clean, axes=1)
