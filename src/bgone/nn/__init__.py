"""The network: tensors in, logits out. Knows nothing about files, HTTP or the registry."""

from .birefnet import ArchConfig, BiRefNet
from .deform_conv import deform_conv2d

__all__ = ["ArchConfig", "BiRefNet", "deform_conv2d"]
