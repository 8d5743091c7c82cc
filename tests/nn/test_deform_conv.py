"""The pure-PyTorch deformable convolution against a literal transcription of torchvision's kernel
(and torchvision itself where it is installed, e.g. on a GPU machine)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from deform_reference import deform_conv2d_reference

from bgone.nn import deform_conv as dc
from bgone.nn.deform_conv import deform_conv2d
from conftest import native

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


METHODS = ["gather", "grid_sample", "op"]  # "op": the exportable operator around "gather"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_reference_in_float32(config, method: str) -> None:
    x, offset, weight, bias, mask = make_inputs(*config)
    pad = config[5] // 2
    ours = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask, method=method)
    ref = deform_conv2d_reference(x, offset, weight, bias, padding=pad, mask=mask)
    assert ours.dtype == torch.float32
    assert torch.allclose(ours.double(), ref, atol=1e-4, rtol=1e-5), (ours.double() - ref).abs().max()


@pytest.mark.parametrize("method", METHODS)
def test_zero_offsets_equal_a_plain_convolution(method: str) -> None:
    x, offset, weight, bias, _ = make_inputs(2, 3, 5, 9, 11, 3, 0.0, False, True)
    ours = deform_conv2d(x, torch.zeros_like(offset), weight, bias, padding=1, method=method)
    assert torch.allclose(ours, F.conv2d(x, weight, bias, padding=1), atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_integer_offsets_shift_the_sampling_grid(method: str) -> None:
    """dy comes before dx: an offset of (+1, 0) on every tap reads one row further down."""
    x = torch.arange(1, 26, dtype=torch.float32).view(1, 1, 5, 5)
    weight = torch.ones(1, 1, 1, 1)
    offset = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 5, 5).contiguous()
    out = deform_conv2d(x, offset, weight, method=method)
    assert torch.equal(out[0, 0, :4], x[0, 0, 1:])
    assert torch.equal(out[0, 0, 4], torch.zeros(5))  # row 5 is outside the map


def test_chunking_does_not_change_the_result(monkeypatch) -> None:
    """grid_sample chunks over kernel taps, gather over output pixels; both bound their temporaries."""
    x, offset, weight, bias, mask = make_inputs(2, 4, 3, 12, 10, 7, 2.0, True, True)
    taps_seen: list[int] = []
    bags_seen: list[int] = []
    real_grid_sample, real_embedding_bag = F.grid_sample, F.embedding_bag

    def grid_spy(inp, grid, **kw):
        taps_seen.append(grid.shape[1] // 12)  # taps sampled in this call
        return real_grid_sample(inp, grid, **kw)

    def bag_spy(index, table, **kw):
        bags_seen.append(index.shape[0] // 49)  # output pixels sampled in this call
        return real_embedding_bag(index, table, **kw)

    whole = deform_conv2d(x, offset, weight, bias, padding=3, mask=mask, method="grid_sample")
    monkeypatch.setattr(dc.F, "grid_sample", grid_spy)
    monkeypatch.setattr(dc.F, "embedding_bag", bag_spy)
    per_tap_bytes = 2 * 4 * 12 * 10 * 4
    chunked = deform_conv2d(
        x, offset, weight, bias, padding=3, mask=mask, max_chunk_bytes=5 * per_tap_bytes, method="grid_sample"
    )
    assert max(taps_seen) == 5 and sum(taps_seen) == 49
    assert torch.allclose(whole, chunked, atol=1e-5)

    gathered = deform_conv2d(x, offset, weight, bias, padding=3, mask=mask, max_chunk_bytes=200_000)
    assert len(bags_seen) > 1 and sum(bags_seen) == 2 * 12 * 10
    assert torch.allclose(whole, gathered, atol=1e-4)


def test_default_chunk_bounds_memory_at_2304(monkeypatch) -> None:
    """The 7x7 branch of the last decoder block at 2304² (a 576² map of 64 channels) would need
    64*49*576² floats = 4.2 GB of sampled columns at once; by default no chunk's columns exceed 64 MiB."""
    sampled_bytes: list[int] = []
    real_embedding_bag = F.embedding_bag

    def bag_spy(index, table, **kw):
        out = real_embedding_bag(index, table, **kw)
        sampled_bytes.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(dc.F, "embedding_bag", bag_spy)
    x = torch.randn(1, 64, 576, 576)
    offset = torch.zeros(1, 98, 576, 576)
    out = deform_conv2d(x, offset, torch.randn(8, 64, 7, 7), padding=3)
    assert out.shape == (1, 8, 576, 576)
    assert len(sampled_bytes) > 60 and max(sampled_bytes) <= dc.DEFAULT_MAX_CHUNK_BYTES
    assert sum(sampled_bytes) == 64 * 49 * 576 * 576 * 4


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("dtype", "tolerance"),
    [pytest.param(torch.bfloat16, 3e-2, marks=native(torch.bfloat16)), pytest.param(torch.float16, 4e-3, marks=native(torch.float16))],
)
@pytest.mark.parametrize("config", CONFIGS[:4])
def test_half_precision(config, dtype: torch.dtype, tolerance: float, method: str) -> None:
    """Output dtype follows the input; the error is the matmul's rounding, relative to the output scale.
    The reference runs on the same rounded inputs so only our arithmetic is measured."""
    x, offset, weight, bias, mask = (t.to(dtype) if t is not None else None for t in make_inputs(*config))
    pad = config[5] // 2
    ours = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask, method=method)
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


def test_nan_offsets_and_unknown_methods() -> None:
    """A NaN offset samples nothing (as in torchvision) instead of indexing out of the table."""
    x, offset, weight, bias, mask = make_inputs(1, 3, 4, 5, 7, 3, 1.0, True, True)
    offset[0, :, 2, 3] = float("nan")
    out = deform_conv2d(x, offset, weight, None, padding=1, mask=mask)
    assert torch.isfinite(out).all() and torch.equal(out[0, :, 2, 3], torch.zeros(4))
    with pytest.raises(ValueError, match="unknown deformable-convolution method"):
        deform_conv2d(x, offset, weight, bias, padding=1, method="cuda-kernel")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("config", CONFIGS)
def test_matches_torchvision_when_installed(config, method: str) -> None:
    ops = pytest.importorskip("torchvision.ops")
    x, offset, weight, bias, mask = make_inputs(*config)
    pad = config[5] // 2
    expected = ops.deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask)
    got = deform_conv2d(x, offset, weight, bias, padding=pad, mask=mask, method=method)
    assert torch.allclose(got, expected, atol=1e-4)
    if torch.cuda.is_available():
        cuda = [t.cuda() if t is not None else None for t in (x, offset, weight, bias, mask)]
        for dtype, tol in ((torch.float32, 1e-3), (torch.float16, 5e-2)):
            args = [t.to(dtype) if t is not None else None for t in cuda]
            got = deform_conv2d(args[0], args[1], args[2], args[3], padding=pad, mask=args[4], method=method)
            ref = ops.deform_conv2d(
                *[a.float() if a is not None else None for a in args[:4]],
                padding=pad,
                mask=args[4].float() if args[4] is not None else None,
            )
            assert torch.allclose(got.float(), ref, atol=tol * ref.abs().max().item())


def test_the_operator_takes_stride_1_and_square_padding_only() -> None:
    x, offset, weight, bias, mask = make_inputs(1, 2, 3, 6, 6, 3, 1.0, True, True)
    with pytest.raises(ValueError, match="stride 1"):
        deform_conv2d(
            x, offset[:, :, ::2, ::2], weight, bias, stride=2, padding=1, mask=mask[:, :, ::2, ::2], method="op"
        )
