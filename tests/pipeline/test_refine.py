"""Blur-fusion foreground refinement (bgone.pipeline.refine) against the official outputs and brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from bgone.pipeline.refine import box_blur, refine_foreground, refine_foreground_array, refine_foreground_tensor
from conftest import DATA

REFINE = DATA / "refine"
CASES = sorted(p.stem for p in REFINE.glob("*.json"))
MAX_LEVELS = 6  # README tolerance on pixels with alpha > 0
MEAN_LEVELS = 0.5


def brute_box(x: np.ndarray, r: int, before: int, mode: str) -> np.ndarray:
    """Literal r×r window mean of a padded copy (float64): pad ``before`` / ``r-1-before`` and average."""
    after = r - 1 - before
    pad = [(before, after), (before, after)] + [(0, 0)] * (x.ndim - 2)
    p = np.pad(x.astype(np.float64), pad, mode=mode)
    h, w = x.shape[:2]
    out = np.empty(x.shape, np.float64)
    for i in range(h):
        for j in range(w):
            out[i, j] = p[i : i + r, j : j + r].mean(axis=(0, 1))
    return out


def cv2_blur_reference(x: np.ndarray, r: int) -> np.ndarray:
    """cv2.blur(x, (r, r)): BORDER_REFLECT_101 (= np.pad 'reflect', repeated for long pads), anchor r // 2."""
    return brute_box(x, r, r // 2, "reflect")


def torch_mean_blur_reference(x: torch.Tensor, r: int) -> torch.Tensor:
    """The official GPU ``mean_blur``, verbatim: replicate pad, then a full r×r avg_pool2d."""
    pad = (r // 2 - 1, r // 2, r // 2 - 1, r // 2) if r % 2 == 0 else (r // 2,) * 4
    xp = torch.nn.functional.pad(x, pad, mode="replicate")
    return torch.nn.functional.avg_pool2d(xp, kernel_size=(r, r), stride=1, count_include_pad=False)


@pytest.mark.parametrize(("shape", "r"), [((9, 11), 1), ((9, 11), 3), ((9, 11), 4), ((12, 7, 3), 6), ((5, 8), 7)])
def test_box_blur_matches_cv2_semantics(shape: tuple[int, ...], r: int) -> None:
    x = np.random.default_rng(r).random(shape, dtype=np.float32)
    got = box_blur(x, r)
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, cv2_blur_reference(x, r), atol=1e-6)


@pytest.mark.parametrize(("shape", "r"), [((6, 5), 90), ((3, 17, 3), 20), ((1, 4), 5), ((4, 1), 8)])
def test_box_blur_radius_larger_than_image(shape: tuple[int, ...], r: int) -> None:
    assert np.array_equal(np.pad(np.arange(3), 7, mode="reflect")[:6], [1, 2, 1, 0, 1, 2])  # repeated reflection
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    np.testing.assert_allclose(box_blur(x, r), cv2_blur_reference(x, r), atol=1e-6)


def test_box_blur_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="radius"):
        box_blur(np.zeros((4, 4), np.float32), 0)
    with pytest.raises(ValueError, match="shape"):
        box_blur(np.zeros(4, np.float32), 3)


@pytest.mark.parametrize("method", ["numpy", "pool"])
@pytest.mark.parametrize(("size", "r"), [((9, 13), 6), ((9, 13), 7), ((5, 6), 90)])
def test_torch_box_matches_official_mean_blur(method: str, size: tuple[int, int], r: int) -> None:
    from bgone.pipeline.refine import _box_torch

    x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(r))
    expected = torch_mean_blur_reference(x.double(), r).float()  # float64: a float32 90×90 pool drifts ~5e-5
    torch.testing.assert_close(_box_torch(x, r, method), expected, atol=5e-6, rtol=0)  # float32 window sums


def load_case(name: str) -> tuple[Image.Image, Image.Image, np.ndarray, np.ndarray]:
    meta = json.loads((REFINE / f"{name}.json").read_text())
    assert meta["radii"] == [90, 6]
    image = Image.open(REFINE / meta["image"])
    alpha = Image.open(REFINE / meta["alpha"])
    image.load()
    alpha.load()
    ref_cpu = np.asarray(Image.open(REFINE / meta["expected_foreground_cv2"]).convert("RGB"), dtype=np.int16)
    ref_torch = np.asarray(Image.open(REFINE / meta["expected_foreground_torch"]).convert("RGB"), dtype=np.int16)
    return image, alpha, ref_cpu, ref_torch


def assert_within_tolerance(out: Image.Image, alpha: Image.Image, ref: np.ndarray, *, max_levels: int) -> None:
    assert out.mode == "RGB" and out.size == alpha.size
    mask = np.asarray(alpha) > 0
    diff = np.abs(np.asarray(out, dtype=np.int16) - ref)[mask]
    assert diff.max() <= max_levels, diff.max()
    assert diff.mean() <= MEAN_LEVELS, diff.mean()


def torch_path(image: Image.Image, alpha: Image.Image, method: str | None = None) -> Image.Image:
    """The GPU code path (run here on the CPU tensors), as refine_foreground uses it on CUDA/MPS."""
    img = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    a = torch.from_numpy(np.asarray(alpha, dtype=np.float32) / 255.0)[None, None]
    fg = refine_foreground_tensor(img, a, _method=method)
    return Image.fromarray(fg[0].mul(255.0).to(torch.uint8).permute(1, 2, 0).numpy())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("path", ["numpy-cv2", "torch"])
def test_refine_parity(case: str, path: str) -> None:
    image, alpha, ref_cpu, ref_torch = load_case(case)
    out = refine_foreground(image, alpha, device="cpu") if path == "numpy-cv2" else torch_path(image, alpha)
    for ref in (ref_cpu, ref_torch):
        assert_within_tolerance(out, alpha, ref, max_levels=MAX_LEVELS)
    # Each path reproduces its own official counterpart much more tightly than the shared tolerance.
    assert_within_tolerance(out, alpha, ref_cpu if path == "numpy-cv2" else ref_torch, max_levels=1)


@pytest.mark.parametrize("case", CASES)
def test_torch_pool_method_matches_reference(case: str) -> None:
    image, alpha, _, ref_torch = load_case(case)
    assert_within_tolerance(torch_path(image, alpha, "pool"), alpha, ref_torch, max_levels=1)


def test_rgba_image_and_resized_mask() -> None:
    image, alpha, _, _ = load_case(CASES[0])
    rgba = image.copy()
    rgba.putalpha(alpha)
    assert np.array_equal(np.asarray(refine_foreground(rgba, alpha)), np.asarray(refine_foreground(image, alpha)))
    small = alpha.resize((alpha.width // 2, alpha.height // 2))
    expected = refine_foreground(image, small.resize(image.size))
    assert np.array_equal(np.asarray(refine_foreground(image, small)), np.asarray(expected))


@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_opaque_and_transparent_masks(path: str) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((23, 31, 3), dtype=np.float32)
    for value in (1.0, 0.0):
        a = np.full(img.shape[:2], value, np.float32)
        if path == "numpy":
            out = refine_foreground_array(img, a)
        else:
            t = refine_foreground_tensor(torch.from_numpy(img).permute(2, 0, 1)[None], torch.from_numpy(a)[None, None])
            out = t[0].permute(1, 2, 0).numpy()
        assert out.shape == img.shape and out.dtype == np.float32
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
        if value == 1.0:
            np.testing.assert_allclose(out, img, atol=1e-4)  # fully opaque: the image itself


def test_pil_validation_errors() -> None:
    rgb = Image.new("RGB", (8, 6))
    mask = Image.new("L", (8, 6))
    with pytest.raises(ValueError, match="mode 'RGB' or 'RGBA'"):
        refine_foreground(Image.new("L", (8, 6)), mask)
    with pytest.raises(ValueError, match="mode 'L' mask"):
        refine_foreground(rgb, Image.new("RGB", (8, 6)))
    with pytest.raises(ValueError, match=r"PIL\.Image\.Image"):
        refine_foreground(np.zeros((6, 8, 3)), mask)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        refine_foreground(Image.new("RGB", (0, 6)), mask)
    with pytest.raises(ValueError, match="radius"):
        refine_foreground(rgb, mask, radius=0)
    assert refine_foreground(rgb, mask, radius=3).size == (8, 6)


def test_array_and_tensor_validation_errors() -> None:
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        refine_foreground_array(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="alpha"):
        refine_foreground_array(np.zeros((4, 4, 3), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        refine_foreground_tensor(torch.zeros(3, 4, 4), torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        refine_foreground_tensor(torch.zeros(2, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="floating-point"):
        refine_foreground_tensor(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize("method", ["numpy", "pool"])
def test_batched_tensor_equals_per_image(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 3, 20, 27, generator=g, dtype=torch.float64)  # float64 in, float32 out
    alpha = torch.rand(3, 1, 20, 27, generator=g)
    batched = refine_foreground_tensor(img, alpha, radius=9, _method=method)
    assert batched.dtype == torch.float32 and batched.shape == img.shape
    for i in range(3):
        single = refine_foreground_tensor(img[i : i + 1], alpha[i : i + 1], radius=9, _method=method)
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-6, rtol=0)


def test_numpy_path_equals_array_api() -> None:
    image, alpha, _, _ = load_case(CASES[0])
    fg = refine_foreground_array(np.asarray(image, np.float32) / 255.0, np.asarray(alpha, np.float32) / 255.0)
    assert np.array_equal((fg * 255.0).astype(np.uint8), np.asarray(refine_foreground(image, alpha)))
