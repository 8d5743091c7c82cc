"""Devices and dtypes: one place that turns user strings into torch objects."""

from __future__ import annotations

import torch

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA, then Apple MPS, then the CPU."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but this PyTorch build sees no CUDA device")
    return resolved


def resolve_dtype(dtype: str | torch.dtype | None = None) -> torch.dtype:
    """``None`` means float32, the official numerics."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; use float32, bfloat16 or float16")
        return dtype
    key = dtype.lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return _DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ModelCache:
    """One loaded model per (source, device, dtype, patch order), reused across calls.

    Least recently used models are dropped beyond ``max_models`` or, when ``max_bytes`` is set, while the
    loaded weights exceed that budget (the model just loaded always stays); loading happens under a lock
    so that concurrent first calls load once.
    """

    def __init__(self, max_models: int = 2, max_bytes: int | None = None) -> None:
        import threading
        from collections import OrderedDict

        self.max_models = max_models
        self.max_bytes = max_bytes
        self._models: OrderedDict[tuple[str, str, str, str | None], torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        source: str,
        device: torch.device,
        dtype: torch.dtype,
        patch_order: str | None = None,
        progress: bool = True,
    ) -> torch.nn.Module:
        from .loader import load_model

        key = (str(source), str(device), dtype_name(dtype), patch_order)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_model(source, device=device, dtype=dtype, patch_order=patch_order, progress=progress)  # type: ignore[arg-type]
            self._models[key] = model
            while len(self._models) > self.max_models or (
                self.max_bytes is not None and len(self._models) > 1 and self.loaded_bytes() > self.max_bytes
            ):
                self._models.popitem(last=False)
            return model

    def loaded_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for m in self._models.values() for t in (*m.parameters(), *m.buffers()))

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODEL_CACHE = ModelCache()
