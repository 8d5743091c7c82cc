"""bgone: self-hosted background removal on BiRefNet.

The public API, re-exported lazily so that ``import bgone`` (and ``bgone --help``, and an API-only
service node) does not load PyTorch until a name that needs it is used::

    import bgone
    image, mask = bgone.remove_background("photo.jpg")
    remover = bgone.Remover("general", device="cuda", dtype="float16", batch_size=4)
    model = bgone.load_model("General Use (Light)")

The wings underneath, each importing only those below it: ``nn`` (the network), ``imaging`` (images in
and out), ``weights`` (checkpoints), ``pipeline`` (removing backgrounds), ``service`` (the HTTP service),
``tools`` (bench, eval, ONNX export) and ``cli`` (the ``bgone`` command); see docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bgone._version import __version__
from bgone.errors import (
    BgoneError,
    CheckpointError,
    ChecksumMismatchError,
    FileDownloadError,
    ImageLoadError,
    ImageTooLargeError,
    InputError,
    ModelError,
    ModelNotAvailableError,
    UnknownModelError,
)

# public name -> the module that defines it
_LAZY = {
    "ArchConfig": "bgone.nn.birefnet",
    "BiRefNet": "bgone.nn.birefnet",
    "DecodedImage": "bgone.imaging.frames",
    "load_image": "bgone.imaging.decode",
    "REGISTRY": "bgone.weights.registry",
    "register": "bgone.weights.registry",
    "Variant": "bgone.weights.variants",
    "load_model": "bgone.weights.loader",
    "RemovalOptions": "bgone.pipeline.options",
    "Resolution": "bgone.pipeline.resolution",
    "RemovalResult": "bgone.pipeline.remover",
    "Remover": "bgone.pipeline.remover",
    "remove_background": "bgone.pipeline.remover",
    "refine_foreground": "bgone.pipeline.refine",
    "remove_video_background": "bgone.pipeline.video",
}

if TYPE_CHECKING:
    from bgone.imaging.decode import load_image
    from bgone.imaging.frames import DecodedImage
    from bgone.nn.birefnet import ArchConfig, BiRefNet
    from bgone.pipeline.options import RemovalOptions
    from bgone.pipeline.refine import refine_foreground
    from bgone.pipeline.remover import RemovalResult, Remover, remove_background
    from bgone.pipeline.resolution import Resolution
    from bgone.pipeline.video import remove_video_background
    from bgone.weights.loader import load_model
    from bgone.weights.registry import REGISTRY, register
    from bgone.weights.variants import Variant


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bgone' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "REGISTRY",
    "ArchConfig",
    "BgoneError",
    "BiRefNet",
    "CheckpointError",
    "ChecksumMismatchError",
    "DecodedImage",
    "FileDownloadError",
    "ImageLoadError",
    "ImageTooLargeError",
    "InputError",
    "ModelError",
    "ModelNotAvailableError",
    "RemovalOptions",
    "RemovalResult",
    "Remover",
    "Resolution",
    "UnknownModelError",
    "Variant",
    "__version__",
    "load_image",
    "load_model",
    "refine_foreground",
    "register",
    "remove_background",
    "remove_video_background",
]
