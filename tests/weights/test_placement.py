"""Device and dtype choices as users of load_model, Remover and the CLI meet them."""

from __future__ import annotations

import warnings

import pytest
import torch

from bgone.weights import placement
from bgone.weights.placement import preferred_dtype, resolve_dtype


def test_auto_dtype_follows_the_hardware(monkeypatch) -> None:
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(placement, "cpu_has_native_bf16", lambda: False)  # no flags, or emulated when measured
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32  # emulated bf16 would be slower
    assert preferred_dtype(torch.device("mps")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert preferred_dtype(torch.device("cuda")) == torch.float16


def test_explicit_dtypes_and_clear_errors() -> None:
    assert resolve_dtype(None) == torch.float32  # load_model's default: the official numerics
    assert resolve_dtype("FP32") == torch.float32 and resolve_dtype("bf16") == torch.bfloat16
    assert resolve_dtype(torch.float16) == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'float8'; use auto, float32, bfloat16 or float16"):
        resolve_dtype("float8")
    with pytest.raises(ValueError, match="unsupported dtype"):
        resolve_dtype(torch.int8)


@pytest.mark.parametrize(
    ("cpuinfo", "measured", "native"),
    [
        ("flags\t: fpu avx512f avx512_bf16 avx512_vnni\n", 0.5, True),  # Zen 4, Cooper Lake
        ("flags\t: fpu avx512f amx_bf16 amx_tile\n", 0.2, True),  # Sapphire Rapids
        ("Features\t: fp asimd bf16 i8mm\n", 0.6, True),  # Arm v8.6+
        ("flags\t: fpu avx2 fma avx512f\n", 0.5, False),  # AVX-512 without BF16: oneDNN would emulate it
        ("flags\t: fpu avx512f amx_bf16\n", 48.0, False),  # the flags, but an ISA cap (ONEDNN_MAX_CPU_ISA)
        (None, 0.5, False),  # no /proc (macOS, Windows)
    ],
)
def test_native_bf16_needs_the_flags_and_a_measurement_that_agrees(
    cpuinfo: str | None, measured: float, native: bool, tmp_path, monkeypatch
) -> None:
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path != "/proc/cpuinfo":
            return real_open(path, *args, **kwargs)
        if cpuinfo is None:
            raise FileNotFoundError(path)
        fake = tmp_path / "cpuinfo"
        fake.write_text(cpuinfo)
        return real_open(fake, *args, **kwargs)

    monkeypatch.setattr(placement, "open", fake_open, raising=False)
    monkeypatch.setattr(placement, "slowdown", lambda dtype: measured)
    for cached in (placement.cpu_flags, placement.cpu_computes_natively):
        cached.cache_clear()
    try:
        assert placement.cpu_has_native_bf16() is native
    finally:
        for cached in (placement.cpu_flags, placement.cpu_computes_natively):
            cached.cache_clear()


def test_explicit_bf16_on_a_cpu_without_it_warns_once_with_the_measured_cost(monkeypatch) -> None:
    monkeypatch.setattr(placement, "cpu_computes_natively", lambda dtype: dtype == torch.float32)
    monkeypatch.setattr(placement, "_warned", set())
    monkeypatch.setattr(placement, "slowdown", lambda dtype: 47.4)
    with pytest.warns(RuntimeWarning, match=r"bfloat16 was asked.*measured 47x slower than in float32 on this CPU.*'auto'"):
        assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # still what was asked for
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second request stays silent
        assert resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
        assert resolve_dtype("auto", torch.device("cpu")) == torch.float32  # auto never picks emulated bf16


def test_the_bf16_cost_is_measured_on_this_cpu() -> None:
    ratio = placement.slowdown(torch.bfloat16, side=64, repeats=2)  # real matmuls: quick on any CPU at this size
    assert 0 < ratio < 10_000
