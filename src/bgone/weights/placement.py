"""Where a model lives and in what precision: user strings (``"auto"``, ``"cuda:1"``, ``"bf16"``) → torch
devices and dtypes, and what the hardware computes natively.

Beside :func:`bgone.weights.loader.load_model`, which places every model it builds; the pipeline and
the tools use the same functions. ``"auto"`` never picks a dtype the hardware would emulate. An explicit
bfloat16 or float16 on a CPU that would emulate it still runs, but warns once with the slowdown measured
on this CPU (PyTorch's emulated half matmuls are tens of times slower than float32 there).
"""

from __future__ import annotations

import functools
import time
import warnings

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
        dtype = dtype_name(dtype)
    key = dtype.lower().removeprefix("torch.")
    if key == "auto":
        return preferred_dtype(device or torch.device("cpu"))
    if key not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    resolved = _DTYPES[key]
    if (device is None or device.type == "cpu") and not cpu_computes_natively(resolved):
        warn_emulated(resolved)
    return resolved


def preferred_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 where the hardware computes it natively, else float32.

    On seeded weights bf16 masks stay within 0.45/255 mean absolute difference of float32 (the
    benchmarks measure it each run). A CPU without bf16 arithmetic would emulate it, far slower than
    float32, so it keeps float32; Apple MPS keeps float32 (its half paths are untested here).
    """
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


# CPU flags (x86 /proc/cpuinfo "flags", Arm "Features") that mean a half dtype's arithmetic is in hardware.
_NATIVE_FLAGS = {
    torch.bfloat16: frozenset({"avx512_bf16", "amx_bf16", "bf16"}),
    torch.float16: frozenset({"avx512_fp16", "amx_fp16", "fphp", "asimdhp"}),
}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            return frozenset(handle.read().split())
    except OSError:
        return frozenset()


@functools.cache
def cpu_computes_natively(dtype: torch.dtype) -> bool:
    """Whether this CPU runs ``dtype``'s matrix arithmetic in hardware. float32 always; bfloat16 and float16
    when the flags say so (AVX512-BF16 or AMX, AVX512-FP16 or AMX-FP16; Arm's BF16 and FP16 extensions)
    and a quick matmul agrees (about 10 ms, once per process): a VM that masks the instructions, or an ISA
    cap such as ``ONEDNN_MAX_CPU_ISA=AVX2``, leaves PyTorch emulating them, tens of times slower."""
    if dtype == torch.float32:
        return True
    return bool(cpu_flags() & _NATIVE_FLAGS.get(dtype, frozenset())) and slowdown(dtype) < 2.0  # emulated: 40x+


def cpu_has_native_bf16() -> bool:
    return cpu_computes_natively(torch.bfloat16)


def use_channels_last(device: torch.device) -> bool:
    """oneDNN (CPU) and cuDNN run convolutions fastest on NHWC; the decoder works in it throughout."""
    return device.type in ("cpu", "cuda")


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")

_warned: set[torch.dtype] = set()


def warn_emulated(dtype: torch.dtype) -> None:
    """Warn, once per process and dtype, that ``dtype`` will be emulated on this CPU, with the slowdown
    measured here."""
    if dtype in _warned:
        return
    _warned.add(dtype)
    name = dtype_name(dtype)
    warnings.warn(
        f"{name} was asked for on a CPU that does not compute it natively (for bfloat16: AVX512-BF16 or AMX): "
        f"PyTorch emulates it, and a matrix multiplication measured {slowdown(dtype):.0f}x slower than in "
        "float32 on this CPU. Use dtype 'auto' (float32 here) or 'float32' unless you need its numerics.",
        RuntimeWarning,
        stacklevel=3,
    )


def slowdown(dtype: torch.dtype, side: int = 256, repeats: int = 3) -> float:
    """How many times slower a ``side``-square matmul runs in ``dtype`` than in float32 on this CPU (best of
    ``repeats``; about a millisecond in float32 at 256)."""
    timings = {}
    for each in (torch.float32, dtype):
        a = torch.randn(side, side).to(each)
        b = torch.randn(side, side).to(each)
        torch.mm(a, b)  # first call: kernel selection
        best = float("inf")
        for _ in range(repeats):
            started = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - started)
        timings[each] = best
    return timings[dtype] / max(timings[torch.float32], 1e-9)
