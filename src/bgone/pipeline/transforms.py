"""Pre- and post-processing exactly as the official BiRefNet pipeline does them.

Official recipe (HF model card, notebooks, demo): ``image.convert("RGB")`` → torchvision ``Resize`` on
the PIL image (= PIL bilinear, antialiased) → ``ToTensor`` → ImageNet ``Normalize``; after the model,
``sigmoid`` → ``ToPILImage`` (``mul(255).byte()``: truncation) at network size → ``Image.resize`` back
to the image size with PIL's default resample for "L" images (bicubic).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from bgone.pipeline.resolution import Size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
