"""Device and dtype choices, and the CPU allocator setting, as users of Remover and the CLI meet them."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from bgone import runtime
from bgone.runtime import preferred_dtype, resolve_dtype


def test_auto_dtype_follows_the_hardware(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    assert resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
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
    ("cpuinfo", "native"),
    [
        ("flags\t: fpu avx512f avx512_bf16 avx512_vnni\n", True),  # Zen 4, Cooper Lake
        ("flags\t: fpu avx512f amx_bf16 amx_tile\n", True),  # Sapphire Rapids
        ("Features\t: fp asimd bf16 i8mm\n", True),  # Arm v8.6+
        ("flags\t: fpu avx2 fma avx512f\n", False),  # AVX-512 without BF16: oneDNN would emulate it
        (None, False),  # no /proc (macOS, Windows)
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo: str | None, native: bool, tmp_path, monkeypatch) -> None:
    real_open = open

    def fake_open(path, *args, **kwargs):
        if path != "/proc/cpuinfo":
            return real_open(path, *args, **kwargs)
        if cpuinfo is None:
            raise FileNotFoundError(path)
        fake = tmp_path / "cpuinfo"
        fake.write_text(cpuinfo)
        return real_open(fake, *args, **kwargs)

    monkeypatch.setattr(runtime, "open", fake_open, raising=False)
    runtime.cpu_has_native_bf16.cache_clear()
    try:
        assert runtime.cpu_has_native_bf16() is native
    finally:
        runtime.cpu_has_native_bf16.cache_clear()


ALLOCATOR_PROBE = """
import os, sys
from bgone import runtime
print(runtime.tune_cpu_allocator(), runtime.tune_cpu_allocator())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc only")
@pytest.mark.parametrize(("setting", "expected"), [("1", "True True"), ("0", "False False"), ("off", "False False")])
def test_allocator_tuning_is_on_by_default_and_can_be_turned_off(setting: str, expected: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "BGONE_MALLOC_TUNING": setting}
    proc = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == expected
