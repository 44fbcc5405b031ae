"""Normalisation and augmentation of whole uint8 batches, on the training device.

The CPU only moves bytes: shards hold uint8 [C, H, W]; a batch arrives on the device as uint8 and is
cropped, normalised, rotated, flipped and jittered there, in a handful of batched tensor ops.

Normalisations, by name (batch effects are largely per-channel gain and offset, so each of these
removes a different share of them):
    none            x / 255
    image           per image and channel: (x - mean) / std over its own pixels
    plate           per plate and channel, from all of the plate's sites
    experiment      per experiment and channel
    plate_controls  per plate and channel, from the plate's control wells only (positive controls
                    and the untreated well are the same siRNAs on every plate, so their statistics
                    measure the plate, not its treatments: one answer to RxRx1's "use the controls")
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

NORMALIZATIONS = ("none", "image", "plate", "experiment", "plate_controls")
_EPS = 1e-3  # in uint8 units: a blank channel must not divide by zero


def check_normalization(name: str) -> str:
    if name not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {name!r}; known: {list(NORMALIZATIONS)}")
    return name


@dataclass(frozen=True)
class AugmentSpec:
    rotate90: bool = True  # random multiple of 90 degrees: cells have no preferred orientation
    flip: bool = True  # random horizontal flip (with rotations: all 8 dihedral symmetries)
    crop: int | None = None  # random crop to this edge in training, centre crop in evaluation
    intensity_jitter: float = 0.0  # per image and channel: x * (1 + U(-j, j)) + U(-j, j)


class BatchTransform:
    """uint8 batch [B, C, H, W] (+ per-sample experiment and plate ids) -> float32 model input."""

    def __init__(self, normalization: str, stats: pd.DataFrame | None, experiments: list[str],
                 plates: list[tuple[str, int]], augment: AugmentSpec = AugmentSpec(),
                 device: torch.device | str = "cpu", seed: int = 0):
        self.normalization = check_normalization(normalization)
        self.augment = augment
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.mean = self.std = None
        if normalization in ("plate", "experiment", "plate_controls"):
            if stats is None:
                raise ValueError(f"normalization {normalization!r} needs the ingest's stats.parquet")
            self.mean, self.std = _lookup_tables(stats, normalization, experiments, plates, self.device)

    def __call__(self, images: torch.Tensor, experiment_id: torch.Tensor, plate_id: torch.Tensor,
                 train: bool) -> torch.Tensor:
        """Crop and rotate/flip the uint8 pixels (a quarter of float32's bytes to move), then one
        fused pass to float: y = x * scale + shift, where scale and shift [B, C, 1, 1] combine the
        normalisation with the intensity jitter. Rotations and flips commute with a per-channel
        affine map, so the order does not change the result. On 2 CPU threads a [32, 6, 512, 512]
        training batch took 0.37-0.45 s as separate passes in float32 and takes ~0.15 s this way."""
        images = images.to(self.device, non_blocking=True)
        if self.augment.crop is not None:
            images = self._crop(images, self.augment.crop, train)
        if train:
            images = self._dihedral(images)
        scale, shift = self._affine(images, experiment_id.to(self.device), plate_id.to(self.device))
        if train and self.augment.intensity_jitter > 0:
            scale, shift = self._jitter(scale, shift, self.augment.intensity_jitter)
        # float(), then in place: measured 2x faster than one mixed-dtype addcmul on CPU.
        return images.float().mul_(scale).add_(shift).contiguous()

    def _affine(self, images: torch.Tensor, experiment_id: torch.Tensor,
                plate_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample and channel (scale, shift) [B, C, 1, 1] such that x * scale + shift is the
        normalised image."""
        shape = (images.shape[0], images.shape[1], 1, 1)
        if self.normalization == "none":
            return torch.full(shape, 1 / 255.0, device=self.device), torch.zeros(shape, device=self.device)
        if self.normalization == "image":
            std, mean = torch.std_mean(images.float(), dim=(2, 3), keepdim=True)
        else:
            key = experiment_id if self.normalization == "experiment" else plate_id
            mean, std = self.mean[key][:, :, None, None], self.std[key][:, :, None, None]
        scale = 1.0 / (std + _EPS) if self.normalization == "image" else 1.0 / std
        return scale, -mean * scale

    def _crop(self, images: torch.Tensor, size: int, train: bool) -> torch.Tensor:
        batch, _, height, width = images.shape
        if size > min(height, width):
            raise ValueError(f"crop {size} is larger than the images ({height}x{width})")
        if not train:
            top, left = (height - size) // 2, (width - size) // 2
            return images[:, :, top:top + size, left:left + size]
        tops = torch.randint(0, height - size + 1, (batch,), device=self.device, generator=self.generator)
        lefts = torch.randint(0, width - size + 1, (batch,), device=self.device, generator=self.generator)
        offsets = torch.arange(size, device=self.device)
        rows = (tops[:, None] + offsets)[:, None, :, None]
        cols = (lefts[:, None] + offsets)[:, None, None, :]
        index = torch.arange(batch, device=self.device)[:, None, None, None]
        channels = torch.arange(images.shape[1], device=self.device)[None, :, None, None]
        return images[index, channels, rows, cols]

    def _dihedral(self, x: torch.Tensor) -> torch.Tensor:
        """Each sample gets one of the 8 rotations/flips; done as at most 8 grouped ops, not B."""
        batch = x.shape[0]
        turns = (torch.randint(0, 4, (batch,), device=self.device, generator=self.generator)
                 if self.augment.rotate90 else torch.zeros(batch, dtype=torch.long, device=self.device))
        flips = (torch.randint(0, 2, (batch,), device=self.device, generator=self.generator)
                 if self.augment.flip else torch.zeros(batch, dtype=torch.long, device=self.device))
        code = turns * 2 + flips
        out = torch.empty_like(x)
        for value in torch.unique(code).tolist():
            chosen = (code == value).nonzero(as_tuple=True)[0]
            part = torch.rot90(x[chosen], k=value // 2, dims=(2, 3))
            out[chosen] = torch.flip(part, dims=(3,)) if value % 2 else part
        return out

    def _jitter(self, scale: torch.Tensor, shift: torch.Tensor, amount: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image and channel y -> y * (1 + U(-j, j)) + U(-j, j), folded into (scale, shift)."""
        gain = 1 + (torch.rand(scale.shape, device=self.device, generator=self.generator) * 2 - 1) * amount
        offset = (torch.rand(scale.shape, device=self.device, generator=self.generator) * 2 - 1) * amount
        return scale * gain, shift * gain + offset


def _lookup_tables(stats: pd.DataFrame, normalization: str, experiments: list[str],
                   plates: list[tuple[str, int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """[K, C] mean and std tables indexed by experiment id or plate id."""
    level = "experiment" if normalization == "experiment" else "plate"
    subset = "controls" if normalization == "plate_controls" else "all"
    chosen = stats[(stats["level"] == level) & (stats["subset"] == subset)]
    table = chosen.pivot_table(index=["experiment", "plate"], columns="channel", values=["mean", "std"])
    keys = [(e, 0) for e in experiments] if level == "experiment" else [(e, int(p)) for e, p in plates]
    missing = [k for k in keys if k not in table.index]
    if missing:
        hint = " (no control wells there; use 'plate')" if subset == "controls" else ""
        raise ValueError(f"stats.parquet has no {level} statistics ({subset}) for {missing[:3]}{hint}")
    mean = torch.tensor(table.loc[keys, "mean"].to_numpy(), dtype=torch.float32, device=device)
    std = torch.tensor(table.loc[keys, "std"].to_numpy(), dtype=torch.float32, device=device)
    return mean, std.clamp_min(_EPS)
