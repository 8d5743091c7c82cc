"""rembg's mask options on bgone's masks: post-processing (``ppm``), "alpha matting" (``a``), mask only
(``om``) and a background colour (``bgc``).

All of it is NumPy and Pillow on "L" masks (0..255), no OpenCV, SciPy or pymatting:

* :func:`post_process_mask` — what rembg's ``post_process_mask`` does with OpenCV: a morphological
  opening with a radius-1 disk (the 3x3 cross), a 5x5 Gaussian blur with sigma 2 (reflect-101
  borders, OpenCV's 8-bit fixed point), then a hard threshold at 127. The result holds only 0 and 255;
  it equals the OpenCV version pixel for pixel (checked in the tests where cv2 is installed).
* :func:`sure_regions` / :func:`matte` — rembg's trimap (sure foreground ``mask > fg_threshold``, sure
  background ``mask < bg_threshold``, both eroded by an ``erode_size`` square). rembg then solves
  closed-form matting in the unknown band; BiRefNet already predicts a soft alpha there, so bgone
  keeps it: alpha is 255 in the eroded foreground, 0 in the eroded background, the model's own value
  in between. Colours are then estimated by :func:`bgone.pipeline.refine.refine_foreground`.
* :func:`rembg_cutout` — one frame end to end in rembg's order: ``ppm`` → ``om`` → ``a`` → colours
  → ``bgc``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from bgone.imaging.colors import composite
from bgone.pipeline.options import RembgOptions
from bgone.pipeline.refine import refine_foreground

GAUSS_SIGMA = 2.0
GAUSS_SIZE = 5  # the kernel size rembg passes along with sigma 2
THRESHOLD = 127
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)  # disk(1)


def _as_array(mask: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(mask.convert("L") if isinstance(mask, Image.Image) else mask)
    if array.ndim != 2:
        raise ValueError(f"a mask must be two-dimensional, got shape {array.shape}")
    return array.astype(np.uint8, copy=False)


def _neighbourhood(array: np.ndarray, footprint: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """``reduce`` (minimum or maximum) over ``footprint`` around every pixel; pixels outside the image
    take the nearest edge value, so borders neither erode nor grow anything."""
    fh, fw = footprint.shape
    padded = np.pad(array, ((fh // 2, fh - 1 - fh // 2), (fw // 2, fw - 1 - fw // 2)), mode="edge")
    height, width = array.shape
    out: np.ndarray | None = None
    for dy, dx in zip(*np.nonzero(footprint), strict=True):
        window = padded[dy : dy + height, dx : dx + width]
        out = window.copy() if out is None else reduce(out, window, out=out)
    assert out is not None
    return out


def _gaussian_kernel(size: int = GAUSS_SIZE, sigma: float = GAUSS_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def gaussian_blur(array: np.ndarray, size: int = GAUSS_SIZE, sigma: float = GAUSS_SIGMA) -> np.ndarray:
    """Separable Gaussian blur of a uint8 array with reflect-101 borders, in the fixed point OpenCV uses
    for 8-bit images (weights rounded to 1/256, one rounding at the end), so it gives the same levels
    as ``cv2.GaussianBlur`` and the threshold after it cuts at the same pixels."""
    weights = np.round(_gaussian_kernel(size, sigma) * 256).astype(np.int64)
    radius = size // 2
    values = array.astype(np.int64)
    for axis in (1, 0):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(values, pad, mode="reflect")  # reflect-101; NumPy reflects again past tiny edges
        length = values.shape[axis]
        blurred = np.zeros_like(values)
        for i, weight in enumerate(weights):
            blurred += weight * (padded[i : i + length] if axis == 0 else padded[:, i : i + length])
        values = blurred
    return ((values + (1 << 15)) >> 16).clip(0, 255).astype(np.uint8)


def post_process_mask(mask: Image.Image | np.ndarray) -> Image.Image:
    """rembg's ``ppm``: opening with the 3x3 cross, Gaussian blur (sigma 2), threshold at 127 → 0 or 255."""
    array = _as_array(mask)
    opened = _neighbourhood(_neighbourhood(array, CROSS, np.minimum), CROSS, np.maximum)
    blurred = gaussian_blur(opened)
    return Image.fromarray(np.where(blurred < THRESHOLD, 0, 255).astype(np.uint8), "L")


def erode(region: np.ndarray, size: int) -> np.ndarray:
    """Binary erosion with a ``size`` x ``size`` square (0 or 1: unchanged); borders do not erode.

    Counts of set pixels in every window come from running sums, so the cost does not grow with ``size``."""
    region = np.asarray(region, dtype=bool)
    if size <= 1:
        return region.copy()
    before, after = size // 2, size - 1 - size // 2
    counts = np.pad(region, ((before, after), (before, after)), mode="edge").astype(np.int32)
    for axis in (0, 1):
        cumulative = np.cumsum(counts, axis=axis)
        zero = np.zeros_like(cumulative.take([0], axis=axis))
        cumulative = np.concatenate([zero, cumulative], axis=axis)
        upper = cumulative.take(range(size, cumulative.shape[axis]), axis=axis)
        lower = cumulative.take(range(cumulative.shape[axis] - size), axis=axis)
        counts = upper - lower
    return counts == size * size


def sure_regions(
    mask: Image.Image | np.ndarray, foreground_threshold: int, background_threshold: int, erode_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """rembg's trimap as two boolean arrays: sure foreground (``mask > foreground_threshold``) and sure
    background (``mask < background_threshold``), each eroded by an ``erode_size`` square."""
    array = _as_array(mask)
    foreground = erode(array > foreground_threshold, erode_size)
    background = erode(array < background_threshold, erode_size)
    return foreground & ~background, background  # where both hold (af below ab), background wins, as in rembg


def matte(
    mask: Image.Image | np.ndarray,
    foreground_threshold: int = 240,
    background_threshold: int = 10,
    erode_size: int = 10,
) -> Image.Image:
    """The ``a`` option on a soft mask: 255 in the sure foreground, 0 in the sure background, the
    model's own alpha in the unknown band between them (where rembg would solve closed-form matting)."""
    array = _as_array(mask).copy()
    foreground, background = sure_regions(array, foreground_threshold, background_threshold, erode_size)
    array[foreground] = 255
    array[background] = 0
    return Image.fromarray(array, "L")


def rembg_cutout(
    frame: Image.Image, mask: Image.Image, options: RembgOptions, *, refine_device: object = None
) -> Image.Image:
    """One frame as rembg's ``remove`` returns it: the "L" mask with ``only_mask``, otherwise RGBA (over
    ``bgcolor`` when given, still RGBA as in rembg). ``mask`` is the final alpha of the frame (already
    multiplied by any alpha the input had); ``frame`` is the decoded RGB or RGBA frame."""
    alpha = mask if mask.mode == "L" else mask.convert("L")
    if options.post_process_mask:
        alpha = post_process_mask(alpha)
    if options.only_mask:
        return alpha
    if options.alpha_matting:
        alpha = matte(alpha, options.foreground_threshold, options.background_threshold, options.erode_size)
    colors = composite(frame, (255, 255, 255)) if frame.mode == "RGBA" else frame.convert("RGB")
    if options.refine_foreground or options.alpha_matting:
        colors = refine_foreground(colors, alpha, device=refine_device)
    cutout = colors.convert("RGBA")
    cutout.putalpha(alpha)
    if options.bgcolor is not None:
        cutout = Image.alpha_composite(Image.new("RGBA", cutout.size, tuple(options.bgcolor)), cutout)
    return cutout
