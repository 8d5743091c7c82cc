"""The pure-PyTorch deformable convolution against a literal transcription of torchvision's kernel
(and torchvision itself where it is installed, e.g. on a GPU machine)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from deform_reference import deform_conv2d_reference

from bgone.nn import deform_conv as dc
from bgone.nn.deform_conv import deform_conv2d

CONFIGS = [
    # batch, channels, out, H, W, kernel, offset scale (pixels), with mask, with bias
    (1, 3, 4, 5, 7, 3, 2.0, True, True),
    (2, 2, 3, 1, 1, 3, 1.5, True, False),  # a 1x1 map: every neighbour but the centre is padding
    (2, 3, 2, 6, 4, 1, 3.0, True, True),
    (1, 2, 3, 4, 5, 7, 2.5, True, False),
    (2, 3, 4, 4, 4, 3, 0.0, False, True),  # zero offsets, no mask: an ordinary convolution
    (1, 2, 2, 3, 8, 3, 6.0, True, True),  # offsets far outside the map
]


def make_inputs(batch, channels, out, height, width, kernel, scale, with_mask, with_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    taps = kernel * kernel
    x = torch.randn(batch, channels, height, width, generator=g)
    offset = torch.randn(batch, 2 * taps, height, width, generator=g) * scale
    mask = 2 * torch.rand(batch, taps, height, width, generator=g) if with_mask else None
    weight = torch.randn(out, channels, kernel, kernel, generator=g)
    bias = torch.randn(out, generator=g) if with_bias else None
    return x, offset, weight, bias, mask


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_reference_in_float32(config) -> None:
    x, offset, weight, bias, mask = make_inputs(*config)
    pad = config[5] // 2
    ours = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask)
    ref = deform_conv2d_reference(x, offset, weight, bias, padding=pad, mask=mask)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), ref, atol=1e-4, rtol=1e-5), (ours.double() - ref).abs().max()


def test_zero_offsets_equal_a_plain_convolution() -> None:
    x, offset, weight, bias, _ = make_inputs(2, 3, 5, 9, 11, 3, 0.0, False, True)
    ours = deform_conv2d(x, torch.zeros_like(offset), weight, bias, padding=1)
    assert torch.allclose(ours, F.conv2d(x, weight, bias, padding=1), atol=1e-5)


def test_integer_offsets_shift_the_sampling_grid() -> None:
    """dy comes before dx: an offset of (+1, 0) on every tap reads one row further down."""
    x = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)
    weight = torch.ones(1, 1, 1, 1)
    offset = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 5, 5).contiguous()
    out = deform_conv2d(x, offset, weight)
    assert torch.equal(out[0, 0, :4], x[0, 0, 1:])
    assert torch.equal(out[0, 0, 4], torch.zeros(5))  # row 5 is outside the map


def test_chunking_does_not_change_the_result(monkeypatch) -> None:
    x, offset, weight, bias, mask = make_inputs(2, 4, 3, 12, 10, 7, 2.0, True, True)
    seen: list[int] = []
    real = F.grid_sample

    def spy(inp, grid, **kw):
        seen.append(grid.shape[1] // 12)  # taps sampled in this call
        return real(inp, grid, **kw)

    whole = deform_conv2d(x, offset, weight, bias, padding=3, mask=mask)
    monkeypatch.setattr(dc.F, "grid_sample", spy)
    per_tap_bytes = 2 * 4 * 12 * 10 * 4
    chunked = deform_conv2d(x, offset, weight, bias, padding=3, mask=mask, max_chunk_bytes=5 * per_tap_bytes)
    assert max(seen) == 5 and sum(seen) == 49
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_default_chunk_bounds_memory_at_2304() -> None:
    """The 7x7 branch of the last decoder block at 2304² (a 576² map of 64 channels) would need
    64*49*576² floats = 4.2 GB of columns at once; the default budget keeps each chunk under 128 MiB."""
    n_pix = 576 * 576
    per_tap = 64 * n_pix * 4
    chunk = max(1, dc.DEFAULT_MAX_CHUNK_BYTES // per_tap)
    assert 1 <= chunk < 49
    assert chunk * per_tap <= 128 * 1024 * 1024


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.bfloat16, 3e-2), (torch.float16, 4e-3)])
@pytest.mark.parametrize("config", CONFIGS[:4])
def test_half_precision(config, dtype: torch.dtype, tolerance: float) -> None:
    """Output dtype follows the input; the error is the matmul's rounding, relative to the output scale.
    The reference runs on the same rounded inputs so only our arithmetic is measured."""
    x, offset, weight, bias, mask = (t.to(dtype) if t is not None else None for t in make_inputs(*config))
    pad = config[5] // 2
    ours = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask)
    assert ours.dtype == dtype
    ref = deform_conv2d_reference(x, offset, weight, bias, padding=pad, mask=mask)
    scale = ref.abs().max().clamp_min(1.0)
    assert ((ours.double() - ref).abs().max() / scale) < tolerance


def test_shape_errors_are_clear() -> None:
    x, offset, weight, bias, mask = make_inputs(1, 3, 4, 5, 7, 3, 1.0, True, True)
    with pytest.raises(ValueError, match="offset must have shape"):
        deform_conv2d(x, offset[:, :4], weight, bias, padding=1, mask=mask)
    with pytest.raises(ValueError, match="input channels"):
        deform_conv2d(x[:, :2], offset, weight, bias, padding=1, mask=mask)


@pytest.mark.parametrize("config", CONFIGS)
def test_matches_torchvision_when_installed(config) -> None:
    ops = pytest.importorskip("torchvision.ops")
    x, offset, weight, bias, mask = make_inputs(*config)
    pad = config[5] // 2
    expected = ops.deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask)
    assert torch.allclose(deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask), expected, atol=1e-4)
    if torch.cuda.is_available():
        cuda = [t.cuda() if t is not None else None for t in (x, offset, weight, bias, mask)]
        for dtype, tol in ((torch.float32, 1e-3), (torch.float16, 5e-2)):
            args = [t.to(dtype) if t is not None else None for t in cuda]
            got = deform_conv2d(args[0], args[1], args[2], args[3], padding=pad, mask=args[4])
            ref = ops.deform_conv2d(
                *[a.float() if a is not None else None for a in args[:4]],
                padding=pad,
                mask=args[4].float() if args[4] is not None else None,
            )
            assert torch.allclose(got.float(), ref, atol=tol * ref.abs().max().item())
