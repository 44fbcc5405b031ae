"""EfficientNet-B0 with torchvision's parameter names (``features.0.0`` stem conv,
``features.1.0.block.0.0`` ..., ``features.8.0`` head conv).

Architecture as torchvision's ``models/efficientnet.py`` (Tan & Le 2019, "EfficientNet: Rethinking
Model Scaling for Convolutional Neural Networks"): MBConv blocks with squeeze-excitation, SiLU,
BatchNorm (torchvision's B0 uses default eps 1e-5), stochastic depth rising linearly to 0.2.
No ``classifier``: the backbone ends at global average pooling (1280 features).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

from .registry import register_backbone


def _make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # do not round down by more than 10%
        new_v += divisor
    return new_v


class Conv2dNormActivation(nn.Sequential):
    """conv (index 0) -> BatchNorm (1) -> activation (2, optional): torchvision's key layout."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
        activation: bool = True,
    ) -> None:
        layers: List[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels: int, squeeze_channels: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.SiLU()
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class StochasticDepth(nn.Module):
    """Drop the whole residual branch per sample with probability ``p`` in training ("row" mode)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"stochastic depth p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * noise.div_(keep)


@dataclass(frozen=True)
class MBConvConfig:
    expand_ratio: int
    kernel: int
    stride: int
    input_channels: int
    out_channels: int
    num_layers: int


class MBConv(nn.Module):
    def __init__(self, cnf: MBConvConfig, stochastic_depth_prob: float) -> None:
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError(f"illegal stride {cnf.stride}")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        layers: List[nn.Module] = []
        expanded = _make_divisible(cnf.input_channels * cnf.expand_ratio)
        if expanded != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, expanded, kernel_size=1))
        layers.append(
            Conv2dNormActivation(expanded, expanded, cnf.kernel, cnf.stride, groups=expanded)
        )
        layers.append(SqueezeExcitation(expanded, max(1, cnf.input_channels // 4)))
        layers.append(
            Conv2dNormActivation(expanded, cnf.out_channels, kernel_size=1, activation=False)
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


# B0: width 1.0, depth 1.0 (torchvision's _efficientnet_conf("efficientnet_b0", 1.0, 1.0)).
_B0: Sequence[MBConvConfig] = (
    MBConvConfig(1, 3, 1, 32, 16, 1),
    MBConvConfig(6, 3, 2, 16, 24, 2),
    MBConvConfig(6, 5, 2, 24, 40, 2),
    MBConvConfig(6, 3, 2, 40, 80, 3),
    MBConvConfig(6, 5, 1, 80, 112, 3),
    MBConvConfig(6, 5, 2, 112, 192, 4),
    MBConvConfig(6, 3, 1, 192, 320, 1),
)


class EfficientNet(nn.Module):
    first_conv = "features.0.0"

    def __init__(
        self,
        settings: Sequence[MBConvConfig] = _B0,
        in_chans: int = 3,
        stochastic_depth_prob: float = 0.2,
        last_channel: Optional[int] = None,
    ) -> None:
        super().__init__()
        layers: List[nn.Module] = [
            Conv2dNormActivation(in_chans, settings[0].input_channels, kernel_size=3, stride=2)
        ]
        total_blocks = sum(c.num_layers for c in settings)
        block_id = 0
        for cnf in settings:
            stage: List[nn.Module] = []
            for i in range(cnf.num_layers):
                block_cnf = cnf if i == 0 else MBConvConfig(
                    cnf.expand_ratio, cnf.kernel, 1, cnf.out_channels, cnf.out_channels, 1
                )
                sd_prob = stochastic_depth_prob * float(block_id) / total_blocks
                stage.append(MBConv(block_cnf, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = settings[-1].out_channels
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(Conv2dNormActivation(last_in, last_out, kernel_size=1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = last_out

        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, num_features] (global average pool after the 1x1 head conv)."""
        return torch.flatten(self.avgpool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_backbone("efficientnet_b0")
def efficientnet_b0(in_chans: int = 3, **kwargs) -> EfficientNet:
    return EfficientNet(_B0, in_chans=in_chans, **kwargs)
