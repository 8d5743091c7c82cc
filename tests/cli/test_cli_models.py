"""The ``bgone models`` commands as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from bgone import settings
from bgone.cli import app
from bgone.weights import registry

runner = CliRunner()


def test_list_json_has_every_model() -> None:
    result = runner.invoke(app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["name"] for r in rows} == {v.name for v in registry.REGISTRY}
    lite = next(r for r in rows if r["name"] == "lite")
    assert lite["fal_names"] == ["v2:General Use (Heavy)"] and lite["local_path"] is None  # fal's map, sic
    general = next(r for r in rows if r["name"] == "general")
    assert general["fal_names"] == ["v2:General Use (Light)"]


def test_list_table() -> None:
    result = runner.invoke(app, ["models", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "swin_v1_l" in result.stdout and "dis-ep580" in result.stdout


def test_info_describes_a_model_without_weights() -> None:
    result = runner.invoke(app, ["models", "info", "General Use (Light)", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["name"] == "general"
    assert report["architecture"]["parameters"]["total"] == 220_176_498
    assert report["local_path"] is None


def test_info_loads_a_checkpoint_file(tmp_path: Path, seeded_state) -> None:
    path = tmp_path / "w.pth"
    torch.save(seeded_state("swin_v1_t_v0", 5), path)
    result = runner.invoke(app, ["models", "info", str(path), "--load", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["architecture"]["backbone"] == "swin_v1_t"
    assert report["architecture"]["design"] == "v0"
    assert report["smoke_test"].startswith("64x64 forward -> (1, 1, 64, 64)")
    assert report["dtype"] == "float32" and report["device"] == "cpu"


def test_verify_reports_good_and_broken_files(tmp_path: Path, seeded_state) -> None:
    good = tmp_path / "good.safetensors"
    from safetensors.torch import save_file

    save_file(dict(seeded_state("swin_v1_t", 1)), str(good))
    result = runner.invoke(app, ["models", "verify", str(good)])
    assert result.exit_code == 0, result.output
    assert "loads strictly as swin_v1_t v1" in result.stdout
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:1000])
    result = runner.invoke(app, ["models", "verify", str(broken)])
    assert result.exit_code == 1


def test_add_registers_a_custom_checkpoint(tmp_path: Path, seeded_state) -> None:
    path = tmp_path / "finetune.pth"
    torch.save(seeded_state("swin_v1_t", 1), path)
    result = runner.invoke(app, ["models", "add", "studio", str(path), "--patch-order", "legacy"])
    assert result.exit_code == 0, result.output
    try:
        saved = json.loads(settings.models_file().read_text())
        assert saved["models"][0]["name"] == "studio"
        assert registry.default_registry().get("studio").patch_order == "legacy"
    finally:
        registry.REGISTRY.remove("studio")


def test_errors_are_clear_and_exit_non_zero(tmp_path: Path) -> None:
    """Through the real console script: typed error, no traceback."""
    bad = subprocess.run(
        [sys.executable, "-m", "bgone.cli", "models", "info", "lightt", "--load"], capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert "[unknown_model]" in bad.stderr and "Traceback" not in bad.stderr
    offline = subprocess.run(
        [sys.executable, "-m", "bgone.cli", "models", "pull", "lite"], capture_output=True, text=True
    )
    assert offline.returncode == 1
    assert "[model_not_available]" in offline.stderr and "lite.safetensors" in offline.stderr
