"""DenseNet-121 with torchvision's parameter names (``features.conv0``, ``features.norm0``,
``features.denseblock1.denselayer1.norm1`` ... ``features.norm5``).

Architecture as torchvision's ``models/densenet.py`` (Huang et al. 2017, "Densely Connected
Convolutional Networks"): growth 32, blocks (6, 12, 24, 16), bottleneck width 4 x growth,
transitions halve channels and resolution. No ``classifier``: ``forward_features`` ends with
ReLU + global average pooling, as torchvision's ``forward`` does before its classifier.

Note: checkpoints from old torchvision releases name layers ``norm.1`` / ``conv.2``; torchvision
renames them in its own loader. Those old-style keys are renamed here too (see
``filter_state_dict``), so both spellings load.
"""

from __future__ import annotations

import re
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_backbone


class _DenseLayer(nn.Module):
    def __init__(self, num_input_features: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, prev_features: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat(prev_features, 1)
        x = self.conv1(self.relu1(self.norm1(x)))
        x = self.conv2(self.relu2(self.norm2(x)))
        if self.drop_rate > 0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x


class _DenseBlock(nn.ModuleDict):
    def __init__(
        self, num_layers: int, num_input_features: int, bn_size: int, growth_rate: int,
        drop_rate: float,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: torch.Tensor) -> torch.Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, 1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


# torchvision's regex for pre-0.3 checkpoints: "denselayer1.norm.1.weight" -> "denselayer1.norm1.weight"
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class DenseNet(nn.Module):
    first_conv = "features.conv0"

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module(
            "conv0", nn.Conv2d(in_chans, num_init_features, 7, stride=2, padding=3, bias=False)
        )
        self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
        self.features.add_module("relu0", nn.ReLU(inplace=True))
        self.features.add_module("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(num_layers, num_features, bn_size, growth_rate, drop_rate)
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features += num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(
                    f"transition{i + 1}", _Transition(num_features, num_features // 2)
                )
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.num_features = num_features

        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def filter_state_dict(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Rename pre-0.3 torchvision keys (``norm.1``) to current ones (``norm1``)."""
        out = {}
        for k, v in state_dict.items():
            m = _OLD_KEY.match(k)
            out[m.group(1) + m.group(2) if m else k] = v
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] -> [N, num_features] (ReLU after norm5, then global average pool)."""
        x = F.relu(self.features(x), inplace=True)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_backbone("densenet121")
def densenet121(in_chans: int = 3, **kwargs) -> DenseNet:
    return DenseNet(32, (6, 12, 24, 16), 64, in_chans=in_chans, **kwargs)
