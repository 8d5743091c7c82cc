"""PVT v2 backbone (b0, b1, b2, b5) as BiRefNet builds it. No released checkpoint uses it, but the
official code supports it and so do we."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BLOCK_NORM_EPS = 1e-6  # blocks and stage norms; patch embeddings and spatial reduction use 1e-5


@dataclass(frozen=True)
class PvtSpec:
    embed_dims: tuple[int, ...]
    num_heads: tuple[int, ...]
    mlp_ratios: tuple[int, ...]
    depths: tuple[int, ...]
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)

    @property
    def channels(self) -> tuple[int, ...]:
        return self.embed_dims


PVT_SPECS: dict[str, PvtSpec] = {
    "pvt_v2_b0": PvtSpec((32, 64, 160, 256), (1, 2, 5, 8), (8, 8, 4, 4), (2, 2, 2, 2)),
    "pvt_v2_b1": PvtSpec((64, 128, 320, 512), (1, 2, 5, 8), (8, 8, 4, 4), (2, 2, 2, 2)),
    "pvt_v2_b2": PvtSpec((64, 128, 320, 512), (1, 2, 5, 8), (8, 8, 4, 4), (3, 4, 6, 3)),
    "pvt_v2_b5": PvtSpec((64, 128, 320, 512), (1, 2, 5, 8), (4, 4, 4, 4), (3, 6, 40, 3)),
}


class OverlapPatchEmbed(nn.Module):
    def __init__(self, in_channels: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=stride, padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        _, _, height, width = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), height, width


class DWConv(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _n, channels = x.shape
        x = self.dwconv(x.transpose(1, 2).reshape(batch, channels, height, width))
        return x.flatten(2).transpose(1, 2)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return self.fc2(self.act(self.dwconv(self.fc1(x), height, width)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, n, channels = x.shape
        head_dim = channels // self.num_heads
        q = self.q(x).view(batch, n, self.num_heads, head_dim).transpose(1, 2)
        if self.sr_ratio > 1:
            reduced = self.sr(x.transpose(1, 2).reshape(batch, channels, height, width))
            x = self.norm(reduced.flatten(2).transpose(1, 2))
        kv = self.kv(x).view(batch, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(out.transpose(1, 2).reshape(batch, n, channels))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.attn = Attention(dim, num_heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), height, width)
        return x + self.mlp(self.norm2(x), height, width)


class PyramidVisionTransformerV2(nn.Module):
    def __init__(self, spec: PvtSpec) -> None:
        super().__init__()
        self.spec = spec
        in_channels = 3
        for i, dim in enumerate(spec.embed_dims):
            patch, stride = (7, 4) if i == 0 else (3, 2)
            self.add_module(f"patch_embed{i + 1}", OverlapPatchEmbed(in_channels, dim, patch, stride))
            blocks = nn.ModuleList(
                Block(dim, spec.num_heads[i], spec.mlp_ratios[i], spec.sr_ratios[i]) for _ in range(spec.depths[i])
            )
            self.add_module(f"block{i + 1}", blocks)
            self.add_module(f"norm{i + 1}", nn.LayerNorm(dim, eps=BLOCK_NORM_EPS))
            in_channels = dim
        self.fast_paths = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        batch = x.shape[0]
        outs = []
        for i in range(len(self.spec.embed_dims)):
            x, height, width = getattr(self, f"patch_embed{i + 1}")(x)
            for block in getattr(self, f"block{i + 1}"):
                x = block(x, height, width)
            x = getattr(self, f"norm{i + 1}")(x)
            x = x.reshape(batch, height, width, -1).permute(0, 3, 1, 2)  # a channels-last view
            if not self.fast_paths:
                x = x.contiguous()
            outs.append(x)
        return outs
