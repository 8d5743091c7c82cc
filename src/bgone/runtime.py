"""Devices and dtypes: one place that turns user strings into torch objects."""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

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


def resolve_dtype(dtype: str | torch.dtype | None = None, device: torch.device | None = None) -> torch.dtype:
    """``None`` means float32, the official numerics; ``"auto"`` the fastest dtype for ``device``
    that keeps masks within tolerance (see :func:`preferred_dtype`)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPES.values():
            raise ValueError(f"unsupported dtype {dtype}; use auto, float32, bfloat16 or float16")
        return dtype
    key = dtype.lower().removeprefix("torch.")
    if key == "auto":
        return preferred_dtype(device or torch.device("cpu"))
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return _DTYPES[key]


def preferred_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware computes it natively, else float32.

    On seeded weights bf16 masks stay within 0.45/255 mean absolute difference of float32 (the
    benchmarks measure it each run). A CPU without bf16 instructions would emulate it, slower than
    float32, so it keeps float32; Apple MPS keeps float32 (its half paths are untested here).
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


@functools.cache
def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on x86, the BF16 extension on Arm (Linux flags; elsewhere: no)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = set(handle.read().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def use_channels_last(device: torch.device) -> bool:
    """oneDNN (CPU) and cuDNN run convolutions fastest on NHWC; the decoder works in it throughout."""
    return device.type in ("cpu", "cuda")


_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed large blocks in glibc's heap instead of returning them to the OS.

    A forward pass allocates and frees hundreds of tensors of tens of MB; by default each one is a
    fresh ``mmap`` whose pages fault in on first touch, which cost 20-25% of a CPU forward pass here.
    The price is that the process keeps its peak memory instead of shrinking between requests.
    ``BGONE_MALLOC_TUNING=0`` turns it off. Returns whether the setting is in effect.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("BGONE_MALLOC_TUNING", "1").lower() in ("0", "false", "no", "off") or sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    one_gib = 1 << 30
    _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, one_gib)) and bool(libc.mallopt(m_trim_threshold, one_gib))
    return _ALLOCATOR_TUNED


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


class ModelCache:
    """One loaded model per (source, device, dtype, patch order, compiled or not), reused across calls.

    Least recently used models are dropped beyond ``max_models`` or, when ``max_bytes`` is set, while the
    loaded weights exceed that budget (the model just loaded always stays); loading happens under a lock
    so that concurrent first calls load once.
    """

    def __init__(self, max_models: int = 2, max_bytes: int | None = None) -> None:
        import threading
        from collections import OrderedDict

        self.max_models = max_models
        self.max_bytes = max_bytes
        self._models: OrderedDict[tuple[str, str, str, str | None, bool], torch.nn.Module] = OrderedDict()
        self._lock = threading.Lock()

    def get(
        self,
        source: str,
        device: torch.device,
        dtype: torch.dtype,
        patch_order: str | None = None,
        progress: bool = True,
        compile: bool = False,
    ) -> torch.nn.Module:
        from .loader import load_model

        key = (str(source), str(device), dtype_name(dtype), patch_order, compile)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_model(source, device=device, dtype=dtype, patch_order=patch_order, progress=progress)  # type: ignore[arg-type]
            if compile:
                model = compile_model(model, device)
            self._models[key] = model
            self._evict()
            return model

    def get_onnx(self, path: str, device: str) -> Any:
        """An onnxruntime session for an exported graph (``bgone.onnx_backend.OnnxNetwork``), cached alike."""
        from .onnx_backend import OnnxNetwork

        key = (str(path), device, "onnx", None, False)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            network = OnnxNetwork(path, device=device)
            self._models[key] = network  # type: ignore[assignment]
            self._evict()
            return network

    def _evict(self) -> None:
        while len(self._models) > self.max_models or (
            self.max_bytes is not None and len(self._models) > 1 and self.loaded_bytes() > self.max_bytes
        ):
            self._models.popitem(last=False)

    def loaded_bytes(self) -> int:
        return sum(_model_bytes(m) for m in self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def _model_bytes(model: Any) -> int:
    if isinstance(model, torch.nn.Module):
        return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    return int(getattr(model, "file_bytes", 0))  # an ONNX session: about its weights' size


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile`` for inference: weights frozen into the graph (constant folding, prepacked
    oneDNN weights on a CPU) and CUDA graphs on a GPU. The first pass at each input shape compiles
    (minutes on a small CPU); later passes at that shape reuse the graph. Call it under ``no_grad``.
    The returned module forwards attribute access (``variant``, ``arch``) to ``model``."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    mode = "reduce-overhead" if device.type == "cuda" else None
    return torch.compile(model, mode=mode, dynamic=False)  # type: ignore[return-value]


MODEL_CACHE = ModelCache()
