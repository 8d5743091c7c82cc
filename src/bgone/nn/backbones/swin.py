"""Swin Transformer v1 backbone as BiRefNet builds it (the detection-style variant).

Differences from the classification Swin that matter for parity: feature maps are zero-padded to
a multiple of the window *after* ``norm1`` and padded tokens are not masked as keys; the shift
mask uses -100 (what every released checkpoint was trained with); every stage output goes through
its own LayerNorm (``norm0``..``norm3``) and is returned as NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinSpec:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of the four stage outputs, shallowest first."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


SWIN_SPECS: dict[str, SwinSpec] = {
    "swin_v1_t": SwinSpec(96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "swin_v1_s": SwinSpec(96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "swin_v1_b": SwinSpec(128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
    "swin_v1_l": SwinSpec(192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
}


def relative_position_index(window: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent: official checkpoints (.pth and HF safetensors) carry this buffer.
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=True)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def position_bias(self) -> torch.Tensor:
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, shift_mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        """windows: (B*nW, N, C), batch-major; shift_mask: (nW, N, N) or None."""
        bnw, n, c = windows.shape
        heads = self.num_heads
        qkv = self.qkv(windows).view(bnw, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        # The official formulation (scale q, add bias and mask, softmax): on a CPU it is about 3x faster
        # than scaled_dot_product_attention, whose math fallback is what runs with an additive mask.
        bias = self.position_bias().to(q.dtype)  # (heads, N, N)
        if shift_mask is not None:
            # (nW, heads, N, N), broadcast over the batch instead of materialising B copies.
            bias = bias.unsqueeze(0) + shift_mask.to(q.dtype).unsqueeze(1)
        scores = torch.matmul(q * (c // heads) ** -0.5, k.transpose(-2, -1))
        scores = scores.view(batch, bnw // batch, heads, n, n).add_(bias).view(bnw, heads, n, n)
        out = torch.matmul(torch.softmax(scores, dim=-1, out=scores), v)  # in place: one pass less
        return self.proj(out.transpose(1, 2).reshape(bnw, n, c))


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, height: int, width: int, shift_mask: torch.Tensor) -> torch.Tensor:
        batch, length, channels = x.shape
        ws = self.window_size
        shortcut = x
        x = self.norm1(x).view(batch, height, width, channels)
        # Padded sizes as ceilings rather than (ws - h % ws) % ws: the same numbers, but far simpler
        # symbolic expressions when the model is exported with dynamic height and width. Written with
        # non-negative operands: ONNX integer division truncates, so -(-h // ws) would come out wrong.
        hp, wp = _round_up(height, ws), _round_up(width, ws)
        x = F.pad(x, (0, 0, 0, wp - width, 0, hp - height))
        if self.shift_size:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = (
            x.view(batch, hp // ws, ws, wp // ws, ws, channels)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(batch * (hp // ws) * (wp // ws), ws * ws, channels)
        )
        windows = self.attn(windows, shift_mask if self.shift_size else None, batch)
        x = (
            windows.view(batch, hp // ws, wp // ws, ws, ws, channels)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(batch, hp, wp, channels)
        )
        if self.shift_size:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = x[:, :height, :width, :]  # a no-op view when nothing was padded; no branch on the size
        x = shortcut + x.reshape(batch, length, channels)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        batch, _, channels = x.shape
        x = x.view(batch, height, width, channels)
        half_h, half_w = _half(height), _half(width)
        # Exports always pad (by zero rows when even): a branch on the size would pin it in the graph.
        if torch.compiler.is_exporting() or height % 2 or width % 2:
            x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        # The official code concatenates x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]:
        # each 2x2 cell's pixels, column offset major. The same as one reshape, with explicit sizes.
        x = x.view(batch, half_h, 2, half_w, 2, channels).permute(0, 1, 3, 4, 2, 5)
        x = x.reshape(batch, half_h * half_w, 4 * channels)
        return self.reduction(self.norm(x))


def _half(size: int) -> int:
    """The side after a patch merge, ceil(size / 2), written the way the padding computes it."""
    return (size + size % 2) // 2


def _round_up(size: int, multiple: int) -> int:
    return (size + multiple - 1) // multiple * multiple


def shifted_window_mask(height: int, width: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, N, N) additive mask for shifted windows on the padded (Hp, Wp) map."""
    hp, wp = _round_up(height, window), _round_up(width, window)

    # The official code labels nine regions by slice assignment over the spans [0, -window),
    # [-window, -shift) and [-shift, end) of each axis; comparisons with the span borders give the
    # same labels with no size-dependent slicing (which would pin sizes in an exported graph).
    def region(size: int) -> torch.Tensor:
        index = torch.arange(size, device=device)
        return (index >= size - window).to(torch.float32) + (index >= size - shift).to(torch.float32)

    labels = region(hp)[:, None] * 3 + region(wp)[None, :]
    windows = labels.view(hp // window, window, wp // window, window).permute(0, 2, 1, 3).reshape(-1, window * window)
    diff = windows.unsqueeze(1) - windows.unsqueeze(2)
    return torch.where(diff != 0, SHIFT_MASK_VALUE, 0.0)


class BasicLayer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, downsample: bool) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, num_heads, window_size, 0 if i % 2 == 0 else self.shift_size)
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = shifted_window_mask(height, width, self.window_size, self.shift_size, x.device)
        for block in self.blocks:
            x = block(x, height, width, mask)
        down = self.downsample(x, height, width) if self.downsample is not None else None
        return x, down


class PatchEmbed(nn.Module):
    def __init__(self, embed_dim: int, patch_size: int = 4) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        _, _, height, width = x.shape
        if width % p or height % p:
            x = F.pad(x, (0, (p - width % p) % p, 0, (p - height % p) % p))
        return self.proj(x)


class SwinTransformer(nn.Module):
    def __init__(self, spec: SwinSpec) -> None:
        super().__init__()
        self.spec = spec
        self.patch_embed = PatchEmbed(spec.embed_dim)
        n = len(spec.depths)
        self.layers = nn.ModuleList(
            BasicLayer(spec.channels[i], spec.depths[i], spec.num_heads[i], spec.window_size, downsample=i < n - 1)
            for i in range(n)
        )
        for i, c in enumerate(spec.channels):
            self.add_module(f"norm{i}", nn.LayerNorm(c))
        self.fast_paths = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        batch, _, height, width = x.shape
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, layer in enumerate(self.layers):
            x_out, x = layer(x, height, width)
            norm: nn.LayerNorm = getattr(self, f"norm{i}")
            out = norm(x_out).view(batch, height, width, x_out.shape[-1]).permute(0, 3, 1, 2)
            # The permuted view is already channels-last, the layout the fast decoder works in.
            outs.append(out if self.fast_paths else out.contiguous())
            height, width = _half(height), _half(width)
        return outs
