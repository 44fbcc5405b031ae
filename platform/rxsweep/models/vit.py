"""ViT-S/16 with timm's parameter names (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``blocks.0.norm1``, ``blocks.0.attn.qkv``, ``blocks.0.mlp.fc1``, ``norm``), as timm's
``vit_small_patch16_224`` (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words"; the S size
from Touvron et al. 2021, DeiT): 12 blocks, width 384, 6 heads, MLP ratio 4, pre-norm, LayerNorm
eps 1e-6, class token, learned absolute position embedding.

Unlike timm, ``forward_features`` returns the pooled vector (the class token after the final norm),
not the token sequence, to match the other rxsweep backbones.

Image size: the position embedding is built for ``img_size`` (a kwarg, default 224). An input of
another size (a multiple of the patch size) gets the grid part of the embedding resampled bicubically
on the fly (timm's ``resample_abs_pos_embed``); checkpoints built for another size are resampled
on load by ``filter_state_dict``.
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .registry import register_backbone


def _pair(v) -> Tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def resample_abs_pos_embed(
    pos_embed: torch.Tensor, new_grid: Tuple[int, int], old_grid: Tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """[1, P + Ho*Wo, D] -> [1, P + Hn*Wn, D]: bicubic resample of the grid tokens; the P prefix
    (class) tokens are kept. ``old_grid`` defaults to a square grid."""
    n_grid = pos_embed.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = int(math.isqrt(n_grid))
        if side * side != n_grid:
            raise ValueError(f"pos_embed has {n_grid} grid tokens, not a square; pass old_grid")
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    dim, dtype = pos_embed.shape[-1], pos_embed.dtype
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=new_grid, mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(dtype)
    return torch.cat([prefix, grid], dim=1)


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = _pair(patch_size)
        for s, p in zip(self.img_size, self.patch_size):
            if s % p:
                raise ValueError(f"img_size {self.img_size} is not a multiple of patch {self.patch_size}")
        self.grid_size = (self.img_size[0] // self.patch_size[0], self.img_size[1] // self.patch_size[1])
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Tuple[int, int]]:
        h, w = x.shape[-2:]
        if h % self.patch_size[0] or w % self.patch_size[1]:
            raise ValueError(f"input {h}x{w} is not a multiple of patch size {self.patch_size}")
        x = self.proj(x)  # [N, D, H/p, W/p]
        grid = (x.shape[-2], x.shape[-1])
        return x.flatten(2).transpose(1, 2), grid


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0
        )
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Per-sample stochastic depth on a residual branch."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    first_conv = "patch_embed.proj"

    def __init__(
        self,
        img_size=224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_features = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.patch_embed.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # timm's linspace
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i])
            for i in range(depth)
        ])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:  # timm's "timm" init scheme
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def filter_state_dict(self, state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Resample a checkpoint's ``pos_embed`` built for another image size to this model's."""
        pe = state_dict.get("pos_embed")
        if pe is not None and pe.shape != self.pos_embed.shape:
            state_dict = dict(state_dict)
            state_dict["pos_embed"] = resample_abs_pos_embed(
                pe, self.patch_embed.grid_size, num_prefix_tokens=self.num_prefix_tokens
            )
        return state_dict

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] (H, W multiples of the patch size) -> [N, embed_dim] (normed class token)."""
        x, grid = self.patch_embed(x)
        pos = resample_abs_pos_embed(
            self.pos_embed, grid, self.patch_embed.grid_size, self.num_prefix_tokens
        )
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.blocks(self.pos_drop(x + pos))
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


@register_backbone("vit_small")
def vit_small(in_chans: int = 3, img_size=224, **kwargs) -> VisionTransformer:
    """ViT-S/16: 12 blocks x 384 dim x 6 heads; ``img_size`` sets the native position grid."""
    kwargs = {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs}
    return VisionTransformer(img_size=img_size, in_chans=in_chans, **kwargs)
