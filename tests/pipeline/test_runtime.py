"""The CPU allocator tuning, as a fresh process meets it (it changes glibc's settings once per process)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ALLOCATOR_PROBE = """
import os, sys
from bgone.pipeline.runtime import tune_cpu_allocator
print(tune_cpu_allocator(), tune_cpu_allocator())
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc only")
@pytest.mark.parametrize(("setting", "expected"), [("1", "True True"), ("0", "False False"), ("off", "False False")])
def test_allocator_tuning_is_on_by_default_and_can_be_turned_off(setting: str, expected: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "BGONE_MALLOC_TUNING": setting}
    proc = subprocess.run([sys.executable, "-c", ALLOCATOR_PROBE], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == expected
