"""Modulated deformable convolution (DCNv2) in pure PyTorch.

Matches ``torchvision.ops.deform_conv2d`` semantics: offsets are stored per kernel tap as
``(dy, dx)`` pairs, sampling is bilinear with zero padding (neighbours outside the map count as
zero, and a sample at ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` is zero), and the output is
``weight @ columns`` with the column index ``c * kh * kw + tap``.

Sampling always runs in float32 (``grid_sample`` with bf16/fp16 grid coordinates would be off
by up to half a pixel at 256 px), and only the matmul runs in the input dtype. Taps are processed
in chunks so that the sampled columns never exceed ``max_chunk_bytes``: at 2304² the 7x7 branch of
the last decoder block would otherwise need several GB for one layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_MAX_CHUNK_BYTES = 128 * 1024 * 1024


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def deform_conv2d(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> torch.Tensor:
    """Deformable convolution with torchvision's argument names and semantics.

    Shapes: ``x`` (B, C, H, W); ``offset`` (B, 2*kh*kw, Ho, Wo); ``mask`` (B, kh*kw, Ho, Wo) or None;
    ``weight`` (O, C, kh, kw). One offset group and one weight group, as BiRefNet uses.
    """
    if x.dim() != 4:
        raise ValueError(f"deform_conv2d expects a 4-D input, got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    out_channels, weight_channels, kh, kw = weight.shape
    if weight_channels != channels:
        raise ValueError(f"weight expects {weight_channels} input channels, input has {channels}")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    out_h = (height + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (width + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    taps = kh * kw
    if offset.shape != (batch, 2 * taps, out_h, out_w):
        raise ValueError(f"offset must have shape {(batch, 2 * taps, out_h, out_w)}, got {tuple(offset.shape)}")
    if mask is not None and mask.shape != (batch, taps, out_h, out_w):
        raise ValueError(f"mask must have shape {(batch, taps, out_h, out_w)}, got {tuple(mask.shape)}")

    compute_dtype = x.dtype
    device = x.device
    x32 = x.float()
    offset32 = offset.float().view(batch, taps, 2, out_h, out_w)
    mask32 = mask.float() if mask is not None else None

    # Sampling position of tap (i, j) at output (oy, ox) before the learned offset.
    base_y = (torch.arange(out_h, device=device, dtype=torch.float32) * sh - ph).view(1, 1, out_h, 1)
    base_x = (torch.arange(out_w, device=device, dtype=torch.float32) * sw - pw).view(1, 1, 1, out_w)
    tap_i = (torch.arange(kh, device=device, dtype=torch.float32) * dh).repeat_interleave(kw)
    tap_j = (torch.arange(kw, device=device, dtype=torch.float32) * dw).repeat(kh)

    w_cols = weight.reshape(out_channels, channels, taps)
    n_pix = out_h * out_w
    bytes_per_tap = batch * channels * n_pix * 4
    chunk = max(1, min(taps, max_chunk_bytes // max(bytes_per_tap, 1)))

    out = torch.zeros(batch, out_channels, n_pix, device=device, dtype=compute_dtype)
    for start in range(0, taps, chunk):
        stop = min(taps, start + chunk)
        g = stop - start
        pos_y = base_y + tap_i[start:stop].view(1, g, 1, 1) + offset32[:, start:stop, 0]
        pos_x = base_x + tap_j[start:stop].view(1, g, 1, 1) + offset32[:, start:stop, 1]
        # align_corners=False normalisation stays defined for maps of width or height 1,
        # and grid_sample's zero padding is exactly torchvision's out-of-range rule.
        grid = torch.stack(((2 * pos_x + 1) / width - 1, (2 * pos_y + 1) / height - 1), dim=-1)
        sampled = F.grid_sample(
            x32,
            grid.view(batch, g * out_h, out_w, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        ).view(batch, channels, g, n_pix)
        if mask32 is not None:
            sampled = sampled * mask32[:, start:stop].reshape(batch, 1, g, n_pix)
        cols = sampled.reshape(batch, channels * g, n_pix).to(compute_dtype)
        w_chunk = w_cols[:, :, start:stop].reshape(out_channels, channels * g).to(compute_dtype)
        out += torch.matmul(w_chunk, cols)
    if bias is not None:
        out += bias.to(compute_dtype).view(1, -1, 1)
    return out.view(batch, out_channels, out_h, out_w)
