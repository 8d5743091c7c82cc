"""``load_model``: a registry name, public model name (fal's "General Use (Light)") or checkpoint path →
a BiRefNet in eval mode, on its device, in its dtype. The one way every wing builds a network."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from bgone.errors import CheckpointError
from bgone.nn.birefnet import BiRefNet
from bgone.nn.types import PATCH_ORDERS, PatchOrder
from bgone.weights.checkpoints import PICKLE_SUFFIXES, SAFETENSORS_SUFFIXES, build_model, read_state_dict
from bgone.weights.hub import fetch_weights
from bgone.weights.placement import resolve_device, resolve_dtype, use_channels_last
from bgone.weights.registry import REGISTRY, public_target
from bgone.weights.variants import Variant

CHECKPOINT_SUFFIXES = PICKLE_SUFFIXES + SAFETENSORS_SUFFIXES


def _looks_like_path(source: str) -> bool:
    return source.lower().endswith(CHECKPOINT_SUFFIXES) or os.sep in source or source.startswith(("~", "."))


def _variant_for_file(path: Path) -> Variant | None:
    """A checkpoint passed by path still gets its variant's defaults when its file name is known."""
    for variant in REGISTRY:
        names = {
            variant.release_filename,
            Path(variant.hf_filename).name if variant.hf_filename.endswith(".pth") else None,
        }
        if path.name in names:
            return variant
    return None


def resolve_source(
    source: str | os.PathLike[str], *, progress: bool = True, verify: bool = True
) -> tuple[Path, Variant | None]:
    """Find the checkpoint file for ``source`` (downloading it if needed) and its registry entry."""
    text = os.fspath(source)
    target = public_target(text)
    if target is not None and target != text and REGISTRY.find(text) is None:
        return resolve_source(target, progress=progress, verify=verify)  # a public name mapped to a name or file
    # An existing file wins; then registry names; then anything path-like is a missing file.
    if (
        isinstance(source, os.PathLike)
        or os.path.isfile(text)
        or (REGISTRY.find(text) is None and _looks_like_path(text))
    ):
        path = Path(text).expanduser()
        if not path.is_file():
            raise CheckpointError(f"checkpoint file not found: {path}")
        return path, _variant_for_file(path)
    variant = REGISTRY.get(text)
    return fetch_weights(variant, progress=progress, verify=verify), variant


def load_model(
    source: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    patch_order: PatchOrder | None = None,
    progress: bool = True,
    verify: bool = True,
) -> BiRefNet:
    """Load a BiRefNet in eval mode.

    ``source``: a registry name (``"general"``, ``"lite"``, …, see ``bgone models list``), a fal model
    name (``"General Use (Light)"``, ``"v1:Portrait"``) or the path of a ``.pth``/``.safetensors`` file.
    ``device``: ``None``/``"auto"`` picks CUDA, then MPS, then the CPU. ``dtype``: float32 (default),
    bfloat16, float16 or ``"auto"`` (bfloat16 where the device computes it natively). ``patch_order``:
    defaults to the order the checkpoint was trained with. On CPU and CUDA the convolution weights are
    stored channels-last, which is faster with any input layout.

    The returned module's ``forward(x)`` takes normalised ``(B, 3, H, W)`` images (H, W multiples of 32)
    and returns logits ``(B, 1, H, W)``.
    """
    if patch_order is not None and patch_order not in PATCH_ORDERS:
        raise ValueError(f"patch_order must be 'einops' or 'legacy', got {patch_order!r}")
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype, target_device)
    path, variant = resolve_source(source, progress=progress, verify=verify)
    state = read_state_dict(path)
    order: PatchOrder = patch_order or (variant.patch_order if variant else "einops")
    model = build_model(state, patch_order=order, source=str(path))
    if variant is not None and variant.backbone != "auto":
        found = (model.arch.backbone, model.arch.design)
        if found != (variant.backbone, variant.design):
            raise CheckpointError(
                f"{path} holds a {found[0]} checkpoint of design {found[1]}, but model {variant.name!r} is "
                f"{variant.backbone} of design {variant.design}; the file is not the checkpoint of {variant.name!r}"
            )
    model.variant = variant
    model.checkpoint_path = path
    # Weights stored in fp16 (HR, 512x512) are upcast here like any other dtype change.
    model = model.to(device=target_device, dtype=target_dtype)
    if use_channels_last(target_device):
        model = model.to(memory_format=torch.channels_last)
    return model
