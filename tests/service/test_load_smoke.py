"""The load-test benchmark as CI runs it: a real `bgone serve`, a short burst at two concurrency levels,
no errors. The full run (1, 4, 16 clients and a 1,000-request memory run) is in benchmarks/RESULTS.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_load_test_quick_run_has_no_errors() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "load_test.py"), "--quick"],
        capture_output=True,
        text=True,
        cwd=REPO / "benchmarks",
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 1 |") or line.startswith("| 4 |")]
    assert len(rows) == 2 and all(row.split("|")[7].strip() == "0" for row in rows)  # the errors column
