"""Read checkpoint files, normalise their keys, detect the architecture, load strictly.

Nothing here downloads anything (that is :mod:`bgone.weights.hub`) and nothing is ever unpickled beyond
tensors and plain containers (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from bgone.errors import CheckpointError
from bgone.nn.backbones.pvt import PVT_SPECS
from bgone.nn.backbones.swin import SWIN_SPECS
from bgone.nn.birefnet import ArchConfig, BiRefNet
from bgone.nn.types import PatchOrder

# Saved by DDP (`module.`) or after torch.compile (`_orig_mod.`); the official loader strips both.
UNWANTED_PREFIXES = ("module.", "_orig_mod.")
# Keys under which training scripts commonly wrap the state dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "params", "ema")
SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl")

StateDict = dict[str, torch.Tensor]


def read_state_dict(path: str | os.PathLike[str]) -> StateDict:
    """Read a ``.pth``/``.pt``/``.bin`` or ``.safetensors`` file into a normalised state dict."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint file is empty: {path}")
    with path.open("rb") as fh:
        head = fh.read(8)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES or (
        path.suffix.lower() not in PICKLE_SUFFIXES and not head.startswith(b"PK") and head[:1] != b"\x80"
    ):
        raw = _read_safetensors(path)
    else:
        raw = _read_torch(path)
    return normalize_state_dict(raw, source=str(path))


def _read_safetensors(path: Path) -> Mapping[str, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"could not read {path} as safetensors ({exc}); the file is truncated, corrupt or not a safetensors file"
        ) from exc


def _read_torch(path: Path) -> Mapping[str, object]:
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path} contains Python objects other than tensors; bgone never unpickles arbitrary objects. "
                "Re-save it with torch.save(model.state_dict(), path) or convert it to .safetensors."
            ) from exc
        raise CheckpointError(f"could not read {path}: the file is truncated or corrupt ({exc})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"could not read {path} as a PyTorch checkpoint: the file is truncated or corrupt ({exc})"
        ) from exc
    if not isinstance(loaded, Mapping):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state dict")
    return loaded


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in UNWANTED_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def normalize_state_dict(raw: Mapping[str, object], source: str = "checkpoint") -> StateDict:
    """Unwrap ``{"state_dict": ...}``-style containers, drop non-tensors, strip training prefixes."""
    current: Mapping[str, object] = raw
    for _ in range(3):
        if any(isinstance(v, torch.Tensor) for v in current.values()):
            break
        inner = next((current[k] for k in WRAPPER_KEYS if isinstance(current.get(k), Mapping)), None)
        if inner is None:
            break
        current = inner  # type: ignore[assignment]
    state = {_strip_prefixes(k): v for k, v in current.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(f"{source} holds no tensors; it is not a model checkpoint")
    return state


def _count_indices(state: StateDict, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for k in state if (m := regex.match(k))}
    return max(found) + 1 if found else 0


def detect_arch(state: StateDict, patch_order: PatchOrder = "einops") -> ArchConfig:
    """Work out backbone, design and normalisation from the keys and shapes alone."""
    if "bb.patch_embed.proj.weight" in state:
        backbone = _detect_swin(state)
    elif "bb.patch_embed1.proj.weight" in state:
        backbone = _detect_pvt(state)
    else:
        sample = ", ".join(sorted(state)[:5])
        raise CheckpointError(
            "this file is not a BiRefNet checkpoint: no backbone keys "
            f"('bb.patch_embed.proj.weight' for Swin or 'bb.patch_embed1.proj.weight' for PVT). First keys: {sample}"
        )
    design = "v1" if "decoder.ipt_blk5.conv1.weight" in state else "v0"
    batch_norm = "squeeze_module.0.bn_in.running_mean" in state or "squeeze_module.0.bn_in.weight" in state
    return ArchConfig(backbone=backbone, design=design, patch_order=patch_order, batch_norm=batch_norm)


def _detect_swin(state: StateDict) -> str:
    embed_dim = state["bb.patch_embed.proj.weight"].shape[0]
    depths = tuple(_count_indices(state, rf"bb\.layers\.{i}\.blocks\.(\d+)\.") for i in range(4))
    table = state.get("bb.layers.0.blocks.0.attn.relative_position_bias_table")
    window = (round(table.shape[0] ** 0.5) + 1) // 2 if table is not None else None
    for name, spec in SWIN_SPECS.items():
        if spec.embed_dim == embed_dim and spec.depths == depths and window in (None, spec.window_size):
            return name
    raise CheckpointError(
        f"Swin backbone with embed dim {embed_dim}, depths {depths} and window {window} matches none of "
        f"{', '.join(SWIN_SPECS)}"
    )


def _detect_pvt(state: StateDict) -> str:
    dims = tuple(
        state[f"bb.patch_embed{i}.proj.weight"].shape[0]
        for i in range(1, 5)
        if f"bb.patch_embed{i}.proj.weight" in state
    )
    depths = tuple(_count_indices(state, rf"bb\.block{i}\.(\d+)\.") for i in range(1, 5))
    for name, spec in PVT_SPECS.items():
        if spec.embed_dims == dims and spec.depths == depths:
            return name
    raise CheckpointError(f"PVT backbone with dims {dims} and depths {depths} matches none of {', '.join(PVT_SPECS)}")


def _describe_mismatch(model: torch.nn.Module, state: StateDict, limit: int = 8) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong_shape):
        return None
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape)):
        if items:
            shown = ", ".join(items[:limit]) + (f", … ({len(items) - limit} more)" if len(items) > limit else "")
            parts.append(f"{len(items)} {label}: {shown}")
    return "; ".join(parts)


def build_model(
    state: StateDict,
    arch: ArchConfig | None = None,
    *,
    patch_order: PatchOrder = "einops",
    source: str = "checkpoint",
) -> BiRefNet:
    """Build the network for ``state`` (detected unless ``arch`` is given) and load it strictly."""
    arch = arch or detect_arch(state, patch_order)
    with torch.device("meta"):
        model = BiRefNet(arch)
    problem = _describe_mismatch(model, state)
    if problem:
        raise CheckpointError(
            f"{source} does not fit BiRefNet ({arch.backbone}, design {arch.design}): {problem}. Nothing was loaded."
        )
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)
