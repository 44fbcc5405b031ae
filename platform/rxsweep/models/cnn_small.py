"""``cnn-small``: a tiny conv net for CPU tests and the local default (~0.24 M parameters).

Four conv3x3-BN-ReLU blocks (32, 64, 128, 128 channels), 2x2 max-pool between them, global average
pool. At 64x64 a forward+backward of a batch of 32 takes tens of milliseconds on one CPU core.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .registry import register_backbone


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_chans, out_chans, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        self.relu = nn.ReLU(inplace=True)


class CNNSmall(nn.Module):
    first_conv = "features.0.conv"

    def __init__(self, in_chans: int = 3, widths: Sequence[int] = (32, 64, 128, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_chans
        for i, w in enumerate(widths):
            if i > 0:  # pool between blocks: stride 8 overall with 4 blocks
                layers.append(nn.MaxPool2d(2))
            layers.append(ConvBNReLU(prev, w))
            prev = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = prev
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, num_features] (global average pool)."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_backbone("cnn-small")
def cnn_small(in_chans: int = 3, **kwargs) -> CNNSmall:
    return CNNSmall(in_chans=in_chans, **kwargs)
