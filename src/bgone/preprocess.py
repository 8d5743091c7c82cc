"""Pre- and post-processing exactly as the official BiRefNet pipeline does them.

Official recipe (HF model card, notebooks, demo): ``image.convert("RGB")`` → torchvision ``Resize`` on
the PIL image (= PIL bilinear, antialiased) → ``ToTensor`` → ImageNet ``Normalize``; after the model,
``sigmoid`` → ``ToPILImage`` (``mul(255).byte()``: truncation) at network size → ``Image.resize`` back
to the image size with PIL's default resample for "L" images (bicubic).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DYNAMIC_MAX_SIDE = 2304  # the dynamic models were trained on 256..2304 per side
FAL_RESOLUTIONS = ("1024x1024", "2048x2048", "2304x2304")

Size = tuple[int, int]  # (width, height), PIL order
DEFAULT_NATIVE: Size = (1024, 1024)  # the native resolution of checkpoints outside the registry


def parse_resolution(value: str | int | Sequence[int] | None) -> Size | str | None:
    """``"1024x1024"``, ``"2560x1440"`` (W x H), ``1024``, ``(w, h)``, ``"dynamic"`` or None (native).

    Every side must be a positive multiple of 32, the network's only constraint."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("dynamic", "auto", "native"):
            return None if text == "native" else "dynamic"
        if text.startswith("dynamic:"):  # the image's own size, longer side capped at N
            cap = text.partition(":")[2]
            if not cap.isdigit() or int(cap) < 32:
                raise ValueError(f"resolution {value!r}: 'dynamic:N' needs a cap N of at least 32")
            return f"dynamic:{int(cap)}"
        match = re.fullmatch(r"(\d+)\s*(?:[x×*,]\s*(\d+))?", text)
        if not match:
            raise ValueError(f"resolution {value!r} is not WxH (e.g. 1024x1024), a single side (1024) or 'dynamic'")
        width = int(match.group(1))
        height = int(match.group(2) or width)
    elif isinstance(value, int):
        width = height = value
    else:
        width, height = (int(v) for v in value)
    for side in (width, height):
        if side <= 0 or side % 32:
            raise ValueError(f"resolution {width}x{height}: each side must be a positive multiple of 32")
    return width, height


def dynamic_size(size: Size, max_side: int = DYNAMIC_MAX_SIDE) -> Size:
    """The image's own size floored to multiples of 32, the longer side capped at ``max_side``."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return tuple(max(32, int(side * scale) // 32 * 32) for side in (width, height))  # type: ignore[return-value]


def operating_size(image_size: Size, native: Size | None, requested: Size | str | None) -> Size:
    """The size the network runs at for one image.

    ``requested`` wins as given; ``None`` means the model's native resolution, and a native resolution
    whose sides differ (Light 2K's 2560x1440) is turned to match the image's orientation, so a portrait
    photo runs at 1440x2560 rather than being squashed into landscape.
    """
    target = native if requested is None else requested
    if target is None or target == "dynamic":
        return dynamic_size(image_size)
    if isinstance(target, str) and target.startswith("dynamic:"):
        return dynamic_size(image_size, min(DYNAMIC_MAX_SIDE, int(target.partition(":")[2])))
    width, height = target  # type: ignore[misc]
    portrait_image = image_size[1] > image_size[0]
    if requested is None and width > height and portrait_image:
        width, height = height, width
    return width, height


def to_model_input(images: Sequence[Image.Image], size: Size, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB PIL images → normalised (B, 3, H, W) tensor at ``size`` (W, H), the official way."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32)
    std = np.asarray(IMAGENET_STD, dtype=np.float32)
    batch = np.empty((len(images), 3, size[1], size[0]), dtype=np.float32)
    for i, image in enumerate(images):
        resized = image.convert("RGB").resize(size, Image.Resampling.BILINEAR)
        pixels = np.asarray(resized, dtype=np.float32) / 255.0
        batch[i] = ((pixels - mean) / std).transpose(2, 0, 1)
    return torch.from_numpy(batch).to(dtype)


def logits_to_masks(logits: torch.Tensor, sizes: Sequence[Size]) -> list[Image.Image]:
    """(B, 1, h, w) logits → "L" masks resized back to each image's size (W, H)."""
    probs = torch.sigmoid(logits.float()).mul(255).to(torch.uint8).cpu().numpy()  # truncation, as ToPILImage
    masks = []
    for prob, size in zip(probs, sizes, strict=True):
        mask = Image.fromarray(prob[0], mode="L")
        masks.append(mask if mask.size == tuple(size) else mask.resize(tuple(size), Image.Resampling.BICUBIC))
    return masks


def bounding_box(mask: Image.Image, threshold: int = 8) -> tuple[int, int, int, int] | None:
    """The box (left, upper, right, lower) of mask pixels above ``threshold``, None when empty."""
    return mask.point(lambda v: 255 if v > threshold else 0).getbbox()


def pixels(size: Size) -> int:
    return math.prod(size)
