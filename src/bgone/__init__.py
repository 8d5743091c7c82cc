"""bgone: self-hosted background removal on BiRefNet."""

from .errors import (
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
from .imaging import DecodedImage, load_image
from .loader import load_model
from .nn.birefnet import ArchConfig, BiRefNet
from .pipeline import RemovalOptions, RemovalResult, Remover, remove_background
from .refine import refine_foreground
from .zoo import REGISTRY, Variant, register

__version__ = "0.1.0"

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
    "UnknownModelError",
    "Variant",
    "__version__",
    "load_image",
    "load_model",
    "refine_foreground",
    "register",
    "remove_background",
]
