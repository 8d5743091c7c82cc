"""A slow, literal transcription of torchvision's CPU deform_conv2d kernel, in float64: the yardstick
for bgone's vectorised implementation when torchvision itself is not installed."""

from __future__ import annotations

import torch

from bgone.nn.deform_conv import _pair


def deform_conv2d_reference(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    x = x.double()
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[-2:]
    offset = offset.double()
    mask = mask.double() if mask is not None else None
    cols = torch.zeros(batch, channels, kh * kw, out_h, out_w, dtype=torch.float64)
    for tap in range(kh * kw):
        i, j = divmod(tap, kw)
        oy = torch.arange(out_h, dtype=torch.float64).view(-1, 1)
        ox = torch.arange(out_w, dtype=torch.float64).view(1, -1)
        y = oy * sh - ph + i * dh + offset[:, 2 * tap]
        xx = ox * sw - pw + j * dw + offset[:, 2 * tap + 1]
        for b in range(batch):
            for r in range(out_h):
                for c in range(out_w):
                    py, px = float(y[b, r, c]), float(xx[b, r, c])
                    if py <= -1 or py >= height or px <= -1 or px >= width:
                        continue
                    y0, x0 = int(torch.floor(torch.tensor(py))), int(torch.floor(torch.tensor(px)))
                    ly, lx = py - y0, px - x0
                    value = torch.zeros(channels, dtype=torch.float64)
                    for yy, xn, wgt in (
                        (y0, x0, (1 - ly) * (1 - lx)),
                        (y0, x0 + 1, (1 - ly) * lx),
                        (y0 + 1, x0, ly * (1 - lx)),
                        (y0 + 1, x0 + 1, ly * lx),
                    ):
                        if 0 <= yy < height and 0 <= xn < width:
                            value += wgt * x[b, :, yy, xn]
                    m = float(mask[b, tap, r, c]) if mask is not None else 1.0
                    cols[b, :, tap, r, c] = m * value
    out = torch.einsum("ok,bkp->bop", weight.double().reshape(out_channels, -1), cols.reshape(batch, -1, out_h * out_w))
    if bias is not None:
        out += bias.double().view(1, -1, 1)
    return out.view(batch, out_channels, out_h, out_w)
