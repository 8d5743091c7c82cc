"""What keeps a process fast on its device: the model cache (one loaded model per source, device, dtype
and compilation, evicted least recently used), ``torch.compile`` for inference, and the CPU allocator
tuning. Devices and dtypes themselves are resolved by :mod:`bgone.weights.placement`."""

from __future__ import annotations

import ctypes
import sys
import threading
from collections import OrderedDict
from typing import Any

import torch

from bgone import settings
from bgone.pipeline.onnx_backend import OnnxNetwork
from bgone.weights.loader import load_model
from bgone.weights.placement import dtype_name

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
    if not settings.malloc_tuning() or sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    one_gib = 1 << 30
    _ALLOCATOR_TUNED = bool(libc.mallopt(m_mmap_threshold, one_gib)) and bool(libc.mallopt(m_trim_threshold, one_gib))
    return _ALLOCATOR_TUNED


class ModelCache:
    """One loaded model per (source, device, dtype, patch order, compiled or not), reused across calls.

    Least recently used models are dropped beyond ``max_models`` or, when ``max_bytes`` is set, while the
    loaded weights exceed that budget (the model just loaded always stays); loading happens under a lock
    so that concurrent first calls load once.
    """

    def __init__(self, max_models: int = 2, max_bytes: int | None = None) -> None:
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
