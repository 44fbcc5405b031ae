"""Hand-made features of one site: what a linear model can read without any deep learning.

The features-baseline (rxsweep.training.features_baseline) fits a logistic regression on them, so a
user sees at once whether the networks learned more than intensity and texture statistics. For a
site of C channels (RxRx1: nucleus, ER, actin, nucleoli, mitochondria, Golgi; WILDS: the first 3),
:func:`site_features` returns 7 x C + 2 values, all log1p-transformed (intensities and counts are
skewed; the log turns multiplicative batch effects into shifts a per-plate standardisation removes):

    mean/<c>        mean intensity of channel c: stain amount and cell density
    std/<c>         standard deviation of channel c: texture and contrast
    q10/<c> ...     the 10 %, 50 %, 90 % and 99 % quantiles of channel c: background level,
    q99/<c>         typical level, bright structures, the brightest spots
    nuclei_count    connected components of the nucleus channel (a DNA stain) above its mean + 0.5
                    sd: roughly the number of nuclei, i.e. cell count (toxicity, proliferation)
    nucleus_area    foreground pixels of that mask per component: mean nucleus size in pixels
    contrast/<c>    (mean of c inside cells + 1) / (mean of c outside + 1), "inside" being the cell-
                    body channel (actin) above its median: how much of a stain sits in the cells

Which channels are the nucleus and the cell body comes from their names (:func:`marker_channels`):
RxRx1's 0 (nucleus) and 2 (actin); Cell Painting's DNA and AGP (actin, Golgi, plasma membrane),
wherever the LoadData layout's alphabetical order puts them.

Names are in the order of the returned vector (FEATURE_NAMES for the 6 RxRx1 channels,
:func:`feature_names` for any count). numpy and scipy only; one site in, one vector out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rxsweep.data.rxrx1_facts import CHANNELS

QUANTILES = (0.1, 0.5, 0.9, 0.99)
NUCLEUS_CHANNEL = 0  # Hoechst, where the names say nothing (RxRx1's order)
ACTIN_CHANNEL = 2  # phalloidin: outlines the cells' bodies
#: Name fragments (lower case) of a nucleus stain and of a cell-body stain.
NUCLEUS_NAMES = ("dna", "hoechst", "dapi", "nucle")
BODY_NAMES = ("agp", "actin", "phalloidin")
#: A nucleus pixel is above the nucleus channel's mean plus this many standard deviations.
NUCLEUS_THRESHOLD_SD = 0.5


def feature_names(channel_names: list[str] | tuple[str, ...]) -> list[str]:
    """Names of :func:`site_features`' values for channels called ``channel_names``, in order."""
    per_channel = ["mean", "std", *(f"q{round(q * 100):02d}" for q in QUANTILES)]
    return ([f"{stat}/{c}" for stat in per_channel for c in channel_names]
            + ["nuclei_count", "nucleus_area"] + [f"contrast/{c}" for c in channel_names])


#: The feature names of a 6-channel RxRx1 site.
FEATURE_NAMES: list[str] = feature_names(CHANNELS)


def marker_channels(channel_names: list[str] | tuple[str, ...]) -> tuple[int, int]:
    """(nucleus, cell body) channel indices from the channels' names; RxRx1's (0, 2) when a name
    is not found. 'nucleoli' is not a nucleus stain: a DNA name is looked for first."""
    lower = [str(n).lower() for n in channel_names]

    def first(fragments: tuple[str, ...], default: int) -> int:
        for fragment in fragments:  # in the order of preference
            for i, name in enumerate(lower):
                if fragment in name and not name.startswith("nucleoli"):
                    return i
        return default

    return first(NUCLEUS_NAMES, NUCLEUS_CHANNEL), first(BODY_NAMES, ACTIN_CHANNEL)


def site_features(channels: np.ndarray, nucleus: int = NUCLEUS_CHANNEL, body: int = ACTIN_CHANNEL) -> np.ndarray:
    """Features of one site (see the module docstring), float64 [7 x C + 2].

    channels: [C, H, W] pixel intensities, C >= 3; ``nucleus`` and ``body``: the indices of the
    nucleus and cell-body channels (:func:`marker_channels`; RxRx1's 0 and 2 by default).
    Any real dtype; unsigned integers (the shards' uint8) take a faster exact path for the
    quantiles (order statistics from a histogram, the same numbers np.quantile gives).
    """
    channels = np.asarray(channels)
    if channels.ndim != 3 or channels.shape[0] <= ACTIN_CHANNEL:
        raise ValueError(f"channels must be [C, H, W] with C >= {ACTIN_CHANNEL + 1}, got shape {channels.shape}")
    flat = channels.reshape(len(channels), -1)
    quantiles = _quantiles(flat)  # [len(QUANTILES), C]
    values = flat.astype(np.float64)
    mean, std = values.mean(1), values.std(1)
    nuclei = channels[nucleus] > mean[nucleus] + NUCLEUS_THRESHOLD_SD * std[nucleus]
    _, count = ndimage.label(nuclei)
    cells = (flat[body] > quantiles[QUANTILES.index(0.5), body])  # above the median
    n_in = int(cells.sum())
    if 0 < n_in < cells.size:
        inside = values @ cells.astype(np.float64)
        outside = values.sum(1) - inside
        contrast = (inside / n_in + 1) / (outside / (cells.size - n_in) + 1)
    else:  # a flat actin channel (blank site): no inside/outside to compare
        contrast = np.ones(len(channels))
    return np.log1p(np.concatenate([mean, std, *quantiles, [count, nuclei.sum() / max(count, 1)], contrast]))


def _quantiles(flat: np.ndarray) -> np.ndarray:
    """np.quantile(flat, QUANTILES, axis=1) (linear interpolation), float64 [len(QUANTILES), C]."""
    if flat.dtype.kind != "u" or flat.dtype.itemsize > 2:
        return np.quantile(flat.astype(np.float64), QUANTILES, axis=1)
    n_channels, n = flat.shape
    levels = 1 << (8 * flat.dtype.itemsize) if flat.max(initial=0) > 255 else 256
    offsets = (np.arange(n_channels) * levels)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=n_channels * levels).reshape(n_channels, levels)
    cumulative = counts.cumsum(1)  # cumulative[c, v] = pixels of channel c <= v
    position = np.asarray(QUANTILES) * (n - 1)  # the virtual index np.quantile interpolates at
    low = np.floor(position).astype(np.int64)
    frac = position - low
    high = np.minimum(low + 1, n - 1)
    # the k-th smallest value (0-based) is the first v whose cumulative count exceeds k
    order = lambda k: np.stack([np.searchsorted(cum, k, side="right") for cum in cumulative], axis=1)
    below, above = order(low).astype(np.float64), order(high).astype(np.float64)
    return below + frac[:, None] * (above - below)
