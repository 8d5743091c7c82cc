"""`bgone bench` as a user runs it (seeded weights, tiny sizes: this checks the tool, not the speed)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import NATIVE_BF16

REQUIRED = {
    "model",
    "resolution",
    "device",
    "dtype",
    "batch",
    "median_s",
    "p90_s",
    "peak_mem_mb",
    "mask_mad_vs_float32",
    "speedup_vs_official",
    "tflops_per_s",
    "images_per_s",
    "mode",
    "first_run_s",
    "device_peak_tflops",
    "peak_fraction",
}


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bgone.cli", "bench", *args], capture_output=True, text=True, check=False
    )


# bfloat16 rows only where this CPU computes it natively: emulated, one 64x64 Swin-T pass takes minutes.
FAST_DTYPES = ["float32", "bfloat16"] if NATIVE_BF16 else ["float32"]


def test_json_rows_with_baseline_ratio_and_mask_drift() -> None:
    proc = bench(
        "-m",
        "lite",
        "-r",
        "64",
        "--dtype",
        ",".join(FAST_DTYPES),
        "--batch",
        "1,2",
        "--runs",
        "1",
        "--warmup",
        "0",
        "--seeded",
        "--device",
        "cpu",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    expected = [("fast", d, b) for d in FAST_DTYPES for b in (1, 2)] + [("official", "float32", b) for b in (1, 2)]
    assert sorted((r["mode"], r["dtype"], r["batch"]) for r in rows) == sorted(expected)
    for row in rows:
        assert set(row) >= REQUIRED, row
        assert row["median_s"] > 0 and row["peak_mem_mb"] > 0 and row["tflops_per_s"] > 0
        assert row["device_peak_tflops"] > 0 and 0 < row["peak_fraction"] < 1.5
    official = [r for r in rows if r["mode"] == "official"]
    assert all(r["speedup_vs_official"] == 1.0 and r["mask_mad_vs_float32"] == 0.0 for r in official)
    fast32 = [r for r in rows if r["mode"] == "fast" and r["dtype"] == "float32"]
    assert all(r["mask_mad_vs_float32"] < 0.01 for r in fast32)  # same math, float rounding only
    bf16 = [r for r in rows if r["dtype"] == "bfloat16"]
    assert all(0 <= r["mask_mad_vs_float32"] < 2.0 for r in bf16)


def test_table_and_clear_failures() -> None:
    proc = bench(
        "-m", "lite", "-r", "64", "--dtype", "float32", "--runs", "1", "--warmup", "0", "--seeded", "--device", "cpu"
    )
    assert proc.returncode == 0 and "| lite | 64 | cpu | official | float32 | 1 |" in proc.stdout
    assert "| lite | 64 | cpu | fast | float32 | 1 |" in proc.stdout
    offline = bench("-m", "lite", "-r", "64", "--dtype", "float32", "--runs", "1", "--device", "cpu")
    assert offline.returncode == 1 and "failed:" in offline.stdout
    bad = bench("-r", "100")
    assert bad.returncode == 2 and "multiple of 32" in bad.stderr
    typo = bench("-r", "64", "--dtype", "bfloat61")
    assert typo.returncode == 2 and "unknown dtype 'bfloat61'" in typo.stderr


def test_a_checkpoint_path_is_benchmarked_like_a_registry_name(lite_checkpoint) -> None:
    proc = bench(
        "-m", str(lite_checkpoint), "-r", "64", "--dtype", FAST_DTYPES[-1], "--runs", "1", "--warmup", "0",
        "--device", "cpu", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["mode"], r["dtype"]) for r in rows] == [("official", "float32"), ("fast", FAST_DTYPES[-1])]
    assert all(r["backbone"] == "swin_v1_t" and r["design"] == "v1" and r["tflops_per_s"] > 0 for r in rows)
