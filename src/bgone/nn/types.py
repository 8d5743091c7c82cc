"""The names that describe a BiRefNet without building one: designs and patch orders (no torch here,
so the weights registry and the service can use them without loading PyTorch)."""

from __future__ import annotations

from typing import Literal

Design = Literal["v1", "v0"]
PatchOrder = Literal["einops", "legacy"]
DESIGNS: tuple[str, ...] = ("v1", "v0")
PATCH_ORDERS: tuple[str, ...] = ("einops", "legacy")
