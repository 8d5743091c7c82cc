"""Foreground colour refinement: BiRefNet's ``refine_foreground`` (blur fusion).

Approximate fast foreground colour estimation by "blur fusion" (Forte & Pitié; Photoroom's
``fast-foreground-estimation``), as in BiRefNet's ``image_proc.py``. With a normalised r×r box
filter ``box``, one step ``BF(I, F, B, α, r)`` is::

    Ā = box(α, r)
    F̄ = box(F·α, r) / (Ā + 1e-5)
    B̄ = box(B·(1−α), r) / ((1−Ā) + 1e-5)
    F_new = clip(F̄ + α·(I − α·F̄ − (1−α)·B̄), 0, 1)        → returns (F_new, B̄)

and the full algorithm is ``F1, B1 = BF(I, I, I, α, r)``; ``F2, _ = BF(I, F1, B1, α, 6)`` with
``r = 90`` by default; the PIL API returns ``uint8(F2·255)`` (truncation, as the official code).

Two box filters, reproducing the two official code paths:

* CPU / NumPy (``box_blur``, ``refine_foreground_array``): ``cv2.blur(x, (r, r))`` —
  ``BORDER_REFLECT_101`` borders, anchor ``r // 2`` (window ``[x − 45, x + 44]`` for r = 90).
  OpenCV is not needed: a sliding-window sum in float64 (O(1) per pixel whatever r), one pass per
  axis, all channels at once.
* torch (``refine_foreground_tensor``): the official GPU ``mean_blur`` — replicate padding and
  ``avg_pool2d`` (window ``[x − 44, x + 45]`` for r = 90), float32 whatever the input dtype.

Both agree with each other to a few levels (a one-pixel window shift and the border mode).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "box_blur",
    "refine_foreground",
    "refine_foreground_array",
    "refine_foreground_tensor",
]

DEFAULT_RADIUS = 90
SECOND_RADIUS = 6  # the official second blur-fusion pass always uses r = 6
_EPS = 1e-5

IndexFn = Callable[[int, int, int], np.ndarray]


# --------------------------------------------------------------------------- box filters (NumPy)


def _reflect101_index(n: int, before: int, after: int) -> np.ndarray:
    """Source index of padded positions ``-before .. n-1+after`` under ``BORDER_REFLECT_101``.

    Repeated reflection when the pad is longer than the axis (``cv2.borderInterpolate``, ``np.pad(mode="reflect")``).
    """
    p = np.arange(-before, n + after, dtype=np.intp)
    if n == 1:
        return np.zeros_like(p)
    period = 2 * (n - 1)
    p %= period
    return np.where(p >= n, period - p, p)


def _replicate_index(n: int, before: int, after: int) -> np.ndarray:
    """Source index of padded positions ``-before .. n-1+after`` under replicate (edge) padding."""
    return np.clip(np.arange(-before, n + after, dtype=np.intp), 0, n - 1)


def _sliding_mean_transposed(x: np.ndarray, r: int, before: int, index_fn: IndexFn, out_t: np.ndarray) -> None:
    """Mean over an r-row window along axis 0 of ``x`` (n, m, C), written transposed to ``out_t`` (m, n, C).

    Row ``i`` of the result averages source rows ``index_fn(n, before, after)[i : i + r]``
    (window ``[i − before, i + r − 1 − before]`` after padding). The window sum is kept in float64
    and slid one row at a time (add the entering row, subtract the leaving one): O(1) per pixel,
    independent of ``r``, and every operation is vectorised over a whole row (m·C values).
    Writing the result transposed lets the next call filter the other axis with rows again.
    """
    n = x.shape[0]
    idx = index_fn(n, before, r - 1 - before).tolist()
    acc = np.zeros(x.shape[1:], dtype=np.float64)
    for k in idx[: r - 1]:
        acc += x[k]
    inv = 1.0 / r
    for i in range(n):
        acc += x[idx[i + r - 1]]
        np.multiply(acc, inv, out=out_t[:, i])
        acc -= x[idx[i]]


def _box_hwc(x: np.ndarray, r: int, before: int, index_fn: IndexFn) -> np.ndarray:
    """Separable r×r mean of a C-contiguous float32 (H, W, C) array; returns a new (H, W, C) float32 array."""
    h, w, c = x.shape
    tmp = np.empty((w, h, c), dtype=np.float32)
    _sliding_mean_transposed(x, r, before, index_fn, tmp)  # vertical pass, stored (W, H, C)
    out = np.empty((h, w, c), dtype=np.float32)
    _sliding_mean_transposed(tmp, r, before, index_fn, out)  # horizontal pass, back to (H, W, C)
    return out


def _check_radius(r: int) -> int:
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or r < 1:
        raise ValueError(f"radius must be a positive integer, got {r!r}")
    return int(r)


def box_blur(x: np.ndarray, r: int) -> np.ndarray:
    """Normalised r×r box filter with the semantics of ``cv2.blur(x, (r, r))`` (the official CPU path).

    Border ``BORDER_REFLECT_101`` (repeated reflection when r exceeds the image side), default
    anchor ``r // 2``: output pixel ``y`` averages input rows/columns ``[y − r//2, y + r − 1 − r//2]``,
    i.e. ``[y − 45, y + 44]`` for r = 90. ``x`` is (H, W) or (H, W, C); the result has the same shape,
    in float32 (accumulated in float64).
    """
    r = _check_radius(r)
    arr = np.asarray(x)
    if arr.ndim not in (2, 3) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"box_blur expects a non-empty (H, W) or (H, W, C) array, got shape {arr.shape}")
    hwc = np.ascontiguousarray(arr[..., None] if arr.ndim == 2 else arr, dtype=np.float32)
    out = _box_hwc(hwc, r, r // 2, _reflect101_index)
    return out[..., 0] if arr.ndim == 2 else out


# --------------------------------------------------------------------------- blur fusion (NumPy, cv2 semantics)


def _blur_fusion_np(
    image: np.ndarray, fg: np.ndarray, bg: np.ndarray, alpha: np.ndarray, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """One blur-fusion step on (H, W, 3) float32 colours and (H, W, 1) float32 alpha (cv2 box)."""
    h, w = alpha.shape[:2]
    one_minus_alpha = 1.0 - alpha
    # α, F·α and B·(1−α) are filtered together as one 7-channel image.
    stack = np.empty((h, w, 7), dtype=np.float32)
    stack[..., :1] = alpha
    np.multiply(fg, alpha, out=stack[..., 1:4])
    np.multiply(bg, one_minus_alpha, out=stack[..., 4:])
    blurred = _box_hwc(stack, r, r // 2, _reflect101_index)
    del stack
    blurred_alpha = blurred[..., :1]
    blurred_fg = blurred[..., 1:4] / (blurred_alpha + _EPS)
    blurred_bg = blurred[..., 4:] / ((1.0 - blurred_alpha) + _EPS)
    del blurred
    # F = F̄ + α·(I − α·F̄ − (1−α)·B̄), evaluated in place in the official order.
    out = alpha * blurred_fg
    np.subtract(image, out, out=out)
    out -= one_minus_alpha * blurred_bg
    out *= alpha
    out += blurred_fg
    np.clip(out, 0.0, 1.0, out=out)
    return out, blurred_bg


def refine_foreground_array(image: np.ndarray, alpha: np.ndarray, radius: int = DEFAULT_RADIUS) -> np.ndarray:
    """Blur-fusion foreground estimate on NumPy arrays — the official CPU path (``cv2.blur``, reflect-101).

    ``image``: (H, W, 3) RGB in [0, 1]; ``alpha``: (H, W) or (H, W, 1) in [0, 1]; both are used as
    float32. Runs ``BF(r=radius)`` then ``BF(r=6)`` and returns the foreground colours, (H, W, 3)
    float32 in [0, 1]. Reproduces ``FB_blur_fusion_foreground_estimator_cpu_2``.
    """
    radius = _check_radius(radius)
    img = np.ascontiguousarray(image, dtype=np.float32)
    a = np.asarray(alpha, dtype=np.float32)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] == 0 or img.shape[1] == 0:
        raise ValueError(f"image must be a non-empty (H, W, 3) array, got shape {img.shape}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.shape != img.shape[:2]:
        raise ValueError(f"alpha must be (H, W) = {img.shape[:2]} like the image, got shape {np.shape(alpha)}")
    a = np.ascontiguousarray(a)[..., None]
    fg, bg = _blur_fusion_np(img, img, img, a, radius)
    fg, _ = _blur_fusion_np(img, fg, bg, a, SECOND_RADIUS)
    return fg


# --------------------------------------------------------------------------- torch path (official GPU semantics)


def _box_torch(x: torch.Tensor, r: int, method: str | None = None) -> torch.Tensor:
    """The official ``mean_blur``: replicate padding + r×r ``avg_pool2d``, on (N, C, H, W) float32.

    Window ``[y − (r−1)//2, y + r//2]`` (``[y − 44, y + 45]`` for r = 90), replicate border. ``method``:
    ``"pool"`` — separable ``avg_pool2d`` ((r, 1) then (1, r); exact float32 window sums, any device,
    the default off the CPU); ``"numpy"`` — the float64 sliding-sum kernel of the CPU path with a
    replicate index map (much faster on the CPU, the default there).
    """
    if method is None:
        method = "numpy" if x.device.type == "cpu" else "pool"
    before = (r - 1) // 2
    after = r - 1 - before
    if method == "pool":
        y = F.pad(x, (0, 0, before, after), mode="replicate")
        y = F.avg_pool2d(y, kernel_size=(r, 1), stride=1)
        y = F.pad(y, (before, after, 0, 0), mode="replicate")
        return F.avg_pool2d(y, kernel_size=(1, r), stride=1)
    if method == "numpy":
        if x.device.type != "cpu":
            raise ValueError("the 'numpy' box filter needs a CPU tensor")
        hwc = x.detach().permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C)
        out = np.stack([_box_hwc(img, r, before, _replicate_index) for img in hwc])
        return torch.from_numpy(out).permute(0, 3, 1, 2)
    raise ValueError(f"unknown box filter method {method!r}; use 'pool' or 'numpy'")


def _blur_fusion_torch(
    image: torch.Tensor, fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor, r: int, method: str | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One blur-fusion step on (N, 3, H, W) colours and (N, 1, H, W) alpha, float32 (official GPU code)."""
    one_minus_alpha = 1 - alpha
    stack = torch.cat([alpha, fg * alpha, bg * one_minus_alpha], dim=1)
    blurred = _box_torch(stack, r, method)
    del stack
    blurred_alpha = blurred[:, :1]
    blurred_fg = blurred[:, 1:4] / (blurred_alpha + _EPS)
    blurred_bg = blurred[:, 4:] / ((1 - blurred_alpha) + _EPS)
    out = blurred_fg + alpha * (image - alpha * blurred_fg - one_minus_alpha * blurred_bg)
    return out.clamp_(0, 1), blurred_bg


def refine_foreground_tensor(
    image: torch.Tensor, alpha: torch.Tensor, radius: int = DEFAULT_RADIUS, *, _method: str | None = None
) -> torch.Tensor:
    """Batched blur-fusion foreground estimate on tensors — the official torch/GPU path.

    Reproduces ``FB_blur_fusion_foreground_estimator_gpu_2`` (``mean_blur``: replicate padding,
    ``avg_pool2d``, window ``[y − 44, y + 45]`` for r = 90). ``image``: (B, 3, H, W) RGB in [0, 1];
    ``alpha``: (B, 1, H, W) in [0, 1], moved to the image's device. Computed in float32 whatever
    the input dtype; returns (B, 3, H, W) float32 in [0, 1] on the image's device.
    """
    radius = _check_radius(radius)
    if image.ndim != 4 or image.shape[1] != 3 or image.shape[2] == 0 or image.shape[3] == 0:
        raise ValueError(f"image must be a non-empty (B, 3, H, W) tensor, got shape {tuple(image.shape)}")
    b, _, h, w = image.shape
    if alpha.ndim != 4 or tuple(alpha.shape) != (b, 1, h, w):
        raise ValueError(f"alpha must be a (B, 1, H, W) = {(b, 1, h, w)} tensor, got shape {tuple(alpha.shape)}")
    for name, t in (("image", image), ("alpha", alpha)):
        if not (t.is_floating_point()):
            raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got {t.dtype}")
    with torch.no_grad():
        img = image.detach().to(dtype=torch.float32)
        a = alpha.detach().to(device=img.device, dtype=torch.float32)
        fg, bg = _blur_fusion_torch(img, img, img, a, radius, _method)
        fg, _ = _blur_fusion_torch(img, fg, bg, a, SECOND_RADIUS, _method)
    return fg.contiguous()


# --------------------------------------------------------------------------- PIL API


def _validate_pil(image: Image.Image, alpha: Image.Image) -> tuple[Image.Image, Image.Image]:
    if not isinstance(image, Image.Image):
        raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if not isinstance(alpha, Image.Image):
        raise ValueError(f"alpha must be a PIL.Image.Image, got {type(alpha).__name__}")
    if image.mode not in ("RGB", "RGBA"):
        raise ValueError(
            f"image must be mode 'RGB' or 'RGBA', got {image.mode!r}; convert it with image.convert('RGB')"
        )
    if alpha.mode != "L":
        raise ValueError(f"alpha must be a mode 'L' mask, got {alpha.mode!r}; convert it with mask.convert('L')")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"image is empty ({image.width}x{image.height})")
    if alpha.width == 0 or alpha.height == 0:
        raise ValueError(f"alpha is empty ({alpha.width}x{alpha.height})")
    if image.mode == "RGBA":
        image = image.convert("RGB")
    if alpha.size != image.size:
        alpha = alpha.resize(image.size)  # PIL's default resample, as the official code
    return image, alpha


def refine_foreground(
    image: Image.Image,
    alpha: Image.Image,
    *,
    radius: int = DEFAULT_RADIUS,
    device: str | torch.device | None = None,
) -> Image.Image:
    """Refined foreground colours of ``image`` under the mask ``alpha`` — BiRefNet's ``refine_foreground``.

    ``image``: PIL RGB (or RGBA: its RGB is used); ``alpha``: PIL "L" mask, resized to the image size
    with PIL's default resample if the sizes differ (as the official code). Returns an RGB image of
    the image's size, ``uint8(F·255)`` with truncation; attach the mask with ``putalpha`` yourself.

    ``device``: ``None`` or ``"cpu"`` → the NumPy path reproducing the official CPU code
    (``cv2.blur``, reflect-101 borders); any other device string (``"cuda"``, ``"cuda:1"``, ``"mps"``)
    or a non-CPU ``torch.device`` → the torch path on that device,
    reproducing the official GPU code (replicate borders, window shifted by one pixel).
    """
    radius = _check_radius(radius)
    image, alpha = _validate_pil(image, alpha)
    if device is None or torch.device(device).type == "cpu":
        img = np.asarray(image, dtype=np.float32) / 255.0
        a = np.asarray(alpha, dtype=np.float32) / 255.0
        fg = refine_foreground_array(img, a, radius)
        out = (fg * 255.0).astype(np.uint8)
    else:
        dev = torch.device(device)
        img_t = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).to(dev)
        a_t = torch.from_numpy(np.asarray(alpha, dtype=np.uint8).copy()).to(dev)
        img_t = img_t.permute(2, 0, 1).unsqueeze(0).float().div(255)
        a_t = a_t[None, None].float().div(255)
        fg_t = refine_foreground_tensor(img_t, a_t, radius)
        out = fg_t[0].mul(255.0).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(out))
