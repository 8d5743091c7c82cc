"""The image operations behind rembg's ``ppm``, ``a``, ``om`` and ``bgc`` (bgone.postprocess)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from bgone.pipeline.rembg_mask import (
    RembgOptions,
    _gaussian_kernel,
    erode,
    gaussian_blur,
    matte,
    post_process_mask,
    rembg_cutout,
    sure_regions,
)
from conftest import synthetic_photo


def disc(size: int = 64, radius: float = 20.0, soft: bool = False) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    distance = np.hypot(x - size / 2, y - size / 2)
    if soft:  # a ramp from 255 inside to 0 outside over 8 pixels
        return np.clip((radius + 4 - distance) / 8 * 255, 0, 255).astype(np.uint8)
    return np.where(distance < radius, 255, 0).astype(np.uint8)


def brute_erode(region: np.ndarray, size: int) -> np.ndarray:
    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(region, ((before, after), (before, after)), mode="edge")
    out = np.ones_like(region)
    for dy in range(size):
        for dx in range(size):
            out &= padded[dy : dy + region.shape[0], dx : dx + region.shape[1]]
    return out


def test_gaussian_is_rembgs_5x5_sigma_2() -> None:
    # cv2.getGaussianKernel(5, 2), the kernel rembg's post-processing uses
    assert np.allclose(_gaussian_kernel(), [0.15246914, 0.22184129, 0.25137912, 0.22184129, 0.15246914])
    flat = np.full((9, 13), 77, np.uint8)
    assert (gaussian_blur(flat) == 77).all()  # borders reflect: nothing leaks in or out
    assert (gaussian_blur(np.full((1, 2), 9, np.uint8)) == 9).all()  # smaller than the kernel


def test_post_processing_removes_specks_and_binarises() -> None:
    mask = disc(soft=True)
    mask[2, 2] = 255  # a speck
    mask[60, 5:40] = 255  # a one-pixel line
    out = np.asarray(post_process_mask(Image.fromarray(mask)))
    assert set(np.unique(out)) == {0, 255}
    assert out[2, 2] == 0 and (out[60] == 0).all()
    inside = disc(radius=20) > 0  # the soft disc's 50% contour is at radius 20
    agreement = ((out > 0) == inside).mean()
    assert agreement > 0.98


def test_post_processing_equals_opencv_pixel_for_pixel() -> None:
    """rembg's own code path: cv2.morphologyEx(MORPH_OPEN, 3x3 ellipse), cv2.GaussianBlur((5, 5), 2),
    threshold at 127. OpenCV is not a bgone dependency; the check runs where it is installed."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    sizes = [(1, 1), (2, 3), (4, 2), (5, 5), (37, 61), (80, 120)]
    for i, (height, width) in enumerate(sizes * 2):
        mask = rng.integers(0, 256, (height, width)).astype(np.uint8)
        if i >= len(sizes):  # smooth masks with soft edges, closer to what a model predicts
            mask = np.clip((cv2.GaussianBlur(mask, (0, 0), 4).astype(int) - 110) * 5, 0, 255).astype(np.uint8)
        blurred = cv2.GaussianBlur(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), (5, 5), sigmaX=2, sigmaY=2)
        assert np.array_equal(gaussian_blur(mask), cv2.GaussianBlur(mask, (5, 5), sigmaX=2, sigmaY=2))
        expected = np.where(blurred < 127, 0, 255).astype(np.uint8)
        assert np.array_equal(np.asarray(post_process_mask(mask)), expected), (height, width)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 7, 10])
def test_erosion_matches_a_brute_force_square(size: int) -> None:
    rng = np.random.default_rng(size)
    region = rng.random((23, 31)) > 0.3
    region[5:18, 6:25] = True
    expected = region if size <= 1 else brute_erode(region, size)
    assert np.array_equal(erode(region, size), expected)


def test_trimap_thresholds_are_strict_and_eroded() -> None:
    mask = np.array([[0, 9, 10, 11, 239, 240, 241, 255]], np.uint8).repeat(3, axis=0)
    foreground, background = sure_regions(mask, 240, 10, 0)
    assert foreground[0].tolist() == [False] * 6 + [True, True]
    assert background[0].tolist() == [True, True] + [False] * 6
    soft = disc(soft=True)
    fg3, bg3 = sure_regions(soft, 240, 10, 3)
    fg0, bg0 = sure_regions(soft, 240, 10, 0)
    assert fg3.sum() < fg0.sum() and bg3.sum() < bg0.sum() and not (fg3 & bg3).any()


def test_matting_keeps_the_models_alpha_in_the_unknown_band() -> None:
    soft = disc(soft=True)
    soft[32, 32] = 200  # not quite opaque inside the subject
    out = np.asarray(matte(soft, 150, 100, 3))
    foreground, background = sure_regions(soft, 150, 100, 3)
    assert (out[foreground] == 255).all() and (out[background] == 0).all()
    unknown = ~foreground & ~background
    assert unknown.any() and np.array_equal(out[unknown], soft[unknown])
    assert out[32, 32] == 255


def test_cutout_options_in_rembgs_order() -> None:
    photo = synthetic_photo(64, 64)
    mask = Image.fromarray(disc(soft=True))
    plain = rembg_cutout(photo, mask, RembgOptions(refine_foreground=False))
    assert plain.mode == "RGBA"
    assert np.array_equal(np.asarray(plain)[..., :3], np.asarray(photo))  # rembg's naive cut-out
    assert np.array_equal(np.asarray(plain)[..., 3], np.asarray(mask))
    refined = rembg_cutout(photo, mask, RembgOptions())
    assert not np.array_equal(np.asarray(refined)[..., :3], np.asarray(photo))  # colours re-estimated
    only = rembg_cutout(photo, mask, RembgOptions(only_mask=True, post_process_mask=True, alpha_matting=True))
    assert only.mode == "L" and set(np.unique(np.asarray(only))) == {0, 255}  # ppm applies, matting does not
    over = rembg_cutout(photo, mask, RembgOptions(bgcolor=(0, 0, 255, 255), refine_foreground=False))
    pixels = np.asarray(over)
    assert over.mode == "RGBA" and (pixels[..., 3] == 255).all() and tuple(pixels[0, 0]) == (0, 0, 255, 255)
    half = rembg_cutout(photo, mask, RembgOptions(bgcolor=(0, 0, 255, 128), refine_foreground=False))
    assert tuple(np.asarray(half)[0, 0]) == (0, 0, 255, 128)  # rembg's alpha_composite over the colour
