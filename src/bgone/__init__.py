"""bgone: self-hosted background removal on BiRefNet."""

from .errors import (
    BgoneError,
    CheckpointError,
    ChecksumMismatchError,
    ModelError,
    ModelNotAvailableError,
    UnknownModelError,
)
from .loader import load_model
from .nn.birefnet import ArchConfig, BiRefNet
from .zoo import REGISTRY, Variant, register

__version__ = "0.1.0"

__all__ = [
    "REGISTRY",
    "ArchConfig",
    "BgoneError",
    "BiRefNet",
    "CheckpointError",
    "ChecksumMismatchError",
    "ModelError",
    "ModelNotAvailableError",
    "UnknownModelError",
    "Variant",
    "__version__",
    "load_model",
    "register",
]
