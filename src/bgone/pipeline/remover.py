"""Background removal end to end: decoded image → BiRefNet → mask → refined RGBA.

Every entry point (Python API, CLI, server) runs this pipeline; they differ only in where images
come from and where results go. Frames of animations are processed like separate images and
batched together; images that run at the same operating size share a batch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageChops

from bgone.errors import ModelError
from bgone.imaging.colors import composite
from bgone.imaging.decode import load_image
from bgone.imaging.encode import encode_image
from bgone.imaging.frames import DecodedImage
from bgone.pipeline.onnx_backend import resolve_backend
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.refine import refine_foreground as refine_colors
from bgone.pipeline.resolution import DEFAULT_NATIVE, NATIVE, Resolution, Size
from bgone.pipeline.runtime import MODEL_CACHE, ModelCache, tune_cpu_allocator
from bgone.pipeline.transforms import bounding_box, logits_to_masks, to_model_input
from bgone.settings import DEFAULT_LIMITS, Limits
from bgone.weights.placement import dtype_name, resolve_device, resolve_dtype, use_channels_last

logger = logging.getLogger("bgone")

DEFAULT_MODEL = "lite"  # the fast general model (Swin-T) for the CLI and Python; the service follows fal's map
ImageSource = str | os.PathLike[str] | bytes | Image.Image | Any  # Any: numpy arrays, file objects


@dataclass
class RemovalResult:
    """The cut-out (``image``) and the mask, for each frame; iterating gives ``(image, mask)``."""

    frames: list[Image.Image]  # RGBA; RGB when a background was composited; "L" with mask_only
    masks: list[Image.Image]  # "L", the predicted alpha (times any alpha the input had)
    durations: list[int]
    loop: int
    operating_size: Size
    model: str
    device: str
    options: RemovalOptions
    name: str | None = None
    source_format: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        return self.frames[0]

    @property
    def mask(self) -> Image.Image:
        return self.masks[0]

    @property
    def is_animated(self) -> bool:
        return len(self.frames) > 1

    def __iter__(self):
        return iter((self.image, self.mask))

    def encode(self, fmt: str = "png", *, quality: int | None = None) -> bytes:
        """The cut-out (every frame) in ``fmt``: png, webp, gif or jpeg (composited on white or the background)."""
        return encode_image(self.frames, fmt, durations=self.durations, loop=self.loop, quality=quality)

    def encode_mask(self, fmt: str = "png") -> bytes:
        return encode_image(self.masks, fmt, durations=self.durations, loop=self.loop)


class Remover:
    """Holds a loaded model and removes backgrounds with it.

    >>> remover = Remover("lite")                                      # doctest: +SKIP
    >>> image, mask = remover.remove("photo.jpg")                      # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str] = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = "auto",
        patch_order: str | None = None,
        batch_size: int = 1,
        limits: Limits = DEFAULT_LIMITS,
        cache: ModelCache = MODEL_CACHE,
        progress: bool = True,
        fetcher: Callable[[str], bytes] | None = None,
        compile: bool = False,
        backend: str = "auto",
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.backend = resolve_backend(backend, model)
        self.batch_size = batch_size
        self.limits = limits
        self.fetcher = fetcher  # URL inputs; default: bgone.fetch.fetch_url (no private addresses)
        self.options = RemovalOptions(**options)
        self.compiled = compile
        if self.backend == "onnx":
            self._init_onnx(model, device, dtype, compile, cache)
        else:
            self.device = resolve_device(device)
            self.dtype = resolve_dtype(dtype, self.device)
            if self.device.type == "cpu":
                tune_cpu_allocator()
            self.memory_format = torch.channels_last if use_channels_last(self.device) else torch.contiguous_format
            self.net = cache.get(
                os.fspath(model), self.device, self.dtype, patch_order, progress=progress, compile=compile
            )
            variant = getattr(self.net, "variant", None)
            self.model_name = variant.name if variant is not None else os.fspath(model)
            self.native: Size | None = variant.resolution if variant is not None else DEFAULT_NATIVE
        logger.info("bgone: model %s", self.describe())

    def _init_onnx(
        self, model: str | os.PathLike[str], device: Any, dtype: Any, compile: bool, cache: ModelCache
    ) -> None:
        """An exported graph run by onnxruntime: its own dtype and device (providers); tensors stay on the CPU."""
        if compile:
            raise ModelError("--compile applies to the PyTorch backend, not to ONNX graphs")
        if dtype not in (None, "auto", "float32", torch.float32):
            raise ModelError("an ONNX graph computes in the dtype it was exported with; leave --dtype at auto")
        self.net = cache.get_onnx(os.fspath(model), "auto" if device is None else str(device))
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.memory_format = torch.contiguous_format
        self.model_name = self.net.info.name
        self.native = self.net.info.resolution
        if self.net.info.fixed_size is not None:  # a fixed-shape export (official release, rembg): its size only
            self.options = self.options.updated(operating_resolution=self.net.info.fixed_size)

    def describe(self) -> str:
        if self.backend == "onnx":
            return f"{self.model_name} (ONNX, {self.net.info.dtype}) on onnxruntime {self.net.provider}"
        return f"{self.model_name} on {self.device} ({dtype_name(self.dtype)})"

    def load(self, source: ImageSource | DecodedImage) -> DecodedImage:
        if isinstance(source, DecodedImage):
            return source
        return load_image(source, limits=self.limits, fetcher=self.fetcher)

    def remove(self, image: ImageSource | DecodedImage, **options: Any) -> RemovalResult:
        return self.remove_many([image], **options)[0]

    def remove_many(self, images: Iterable[ImageSource | DecodedImage], **options: Any) -> list[RemovalResult]:
        """Several images (and all their frames) in batches of ``batch_size``."""
        opts = self.options.updated(**options) if options else self.options
        return self.process([self.load(image) for image in images], opts)

    def process(self, decoded: Sequence[DecodedImage], opts: RemovalOptions) -> list[RemovalResult]:
        started = time.perf_counter()
        masks, sizes = self.predict(decoded, opts.operating_resolution)
        inferred = time.perf_counter()
        results = [
            self.finish(image, image_masks, opts, size)
            for image, image_masks, size in zip(decoded, masks, sizes, strict=True)
        ]
        for result in results:
            result.timings = {"inference": inferred - started, "postprocess": time.perf_counter() - inferred}
        return results

    def predict(
        self, decoded: Sequence[DecodedImage], resolution: Resolution = NATIVE
    ) -> tuple[list[list[Image.Image]], list[Size]]:
        """Raw masks (one per frame, image size) and the operating size of each image.

        Every frame of every image is one work item; items with the same operating size share batches.
        """
        rgb: dict[tuple[int, int], Image.Image] = {}
        groups: dict[Size, list[tuple[int, int]]] = {}
        op_sizes: list[Size] = []
        for i, image in enumerate(decoded):
            size = resolution.operating_size(image.size, self.native)
            op_sizes.append(size)
            for j, frame in enumerate(image.frames):
                rgb[i, j] = _model_rgb(frame)
                groups.setdefault(size, []).append((i, j))
        masks: dict[tuple[int, int], Image.Image] = {}
        # A compiled graph holds frozen weights, which inference-mode tensors cannot be passed to.
        with torch.no_grad() if self.compiled else torch.inference_mode():
            self._predict_groups(groups, rgb, masks)
        return [[masks[i, j] for j in range(len(image.frames))] for i, image in enumerate(decoded)], op_sizes

    def _predict_groups(
        self,
        groups: dict[Size, list[tuple[int, int]]],
        rgb: dict[tuple[int, int], Image.Image],
        masks: dict[tuple[int, int], Image.Image],
    ) -> None:
        for size, keys in groups.items():
            for start in range(0, len(keys), self.batch_size):
                chunk = keys[start : start + self.batch_size]
                batch = to_model_input([rgb[k] for k in chunk], size, self.dtype)
                batch = batch.to(self.device, memory_format=self.memory_format)
                logits = self.net(batch)
                for key, mask in zip(chunk, logits_to_masks(logits, [rgb[k].size for k in chunk]), strict=True):
                    masks[key] = mask

    def finish(
        self, image: DecodedImage, masks: Sequence[Image.Image], opts: RemovalOptions, size: Size
    ) -> RemovalResult:
        """Alpha, refined colours, background, crop: the per-image half of the pipeline."""
        frames, final_masks = [], []
        for frame, mask in zip(image.frames, masks, strict=True):
            alpha = mask
            if frame.mode == "RGBA":  # what was transparent in the input stays transparent
                alpha = ImageChops.multiply(alpha, frame.getchannel("A"))
            colors = _model_rgb(frame)
            if opts.refine_foreground and not opts.mask_only:
                colors = refine_colors(colors, alpha, device=self.device if self.device.type != "cpu" else None)
            final_masks.append(alpha)
            frames.append(alpha if opts.mask_only else _finish(colors, alpha, opts.background))
        if opts.crop:
            frames, final_masks = _crop(frames, final_masks)
        return RemovalResult(
            frames=frames,
            masks=final_masks,
            durations=list(image.durations),
            loop=image.loop,
            operating_size=size,
            model=self.model_name,
            device=str(self.device),
            options=opts,
            name=image.name,
            source_format=image.source_format,
        )


def _model_rgb(frame: Image.Image) -> Image.Image:
    """What the network sees: RGB, with transparent inputs composited on white like the official demo."""
    if frame.mode == "RGBA":
        return composite(frame, (255, 255, 255))
    return frame if frame.mode == "RGB" else frame.convert("RGB")


def _finish(colors: Image.Image, alpha: Image.Image, background: tuple[int, ...] | Image.Image | None) -> Image.Image:
    cutout = colors.copy()
    cutout.putalpha(alpha)
    return cutout if background is None else composite(cutout, background)


def _crop(frames: list[Image.Image], masks: list[Image.Image]) -> tuple[list[Image.Image], list[Image.Image]]:
    """Crop every frame to the union of the subject's boxes (frames of an animation keep one size)."""
    boxes = [b for m in masks if (b := bounding_box(m)) is not None]
    if not boxes:
        return frames, masks
    box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    return [f.crop(box) for f in frames], [m.crop(box) for m in masks]


def remove_background(
    image: ImageSource | DecodedImage,
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = "auto",
    **options: Any,
) -> RemovalResult:
    """Remove the background of one image (path, bytes, PIL image, numpy array, URL or data URI).

    ``options`` are :class:`RemovalOptions` fields: ``operating_resolution`` ("2048x2048", 1024, "dynamic";
    default the model's own), ``refine_foreground`` (True), ``output_mask``, ``mask_only``, ``background``
    (a colour such as "#ffffff" or an image) and ``crop``.

    Returns a :class:`RemovalResult`; ``image, mask = remove_background(...)`` gives the RGBA cut-out
    and the "L" mask. The model stays loaded for the next call (one per model, device and dtype).
    ``dtype="auto"`` runs bfloat16 where the device computes it natively; ``"float32"`` forces the
    official numerics.
    """
    remover = Remover(model, device=device, dtype=dtype)
    return remover.process([remover.load(image)], RemovalOptions(**options))[0]


def save_result(result: RemovalResult, path: str | os.PathLike[str], fmt: str | None = None) -> Path:
    """Write the cut-out to ``path`` in ``fmt`` (default: from the extension)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".") or "png"
    path.write_bytes(result.encode(fmt))
    return path
