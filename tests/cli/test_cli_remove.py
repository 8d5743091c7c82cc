"""`bgone remove` as a user runs it: folders, globs, stdin/stdout, resumable runs, failures."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bgone.cli import app
from conftest import synthetic_photo

runner = CliRunner()


def run(args: list[str], checkpoint: Path, **kw):
    return runner.invoke(
        app, ["remove", *args, "--model", str(checkpoint), "--resolution", "64", "--device", "cpu"], **kw
    )


def make_tree(root: Path) -> None:
    (root / "shoes" / "red").mkdir(parents=True)
    synthetic_photo(seed=1).save(root / "photo.jpg")
    synthetic_photo(seed=2).save(root / "photo.png")  # same stem as photo.jpg
    synthetic_photo(seed=3).save(root / "shoes" / "a.webp")
    synthetic_photo(seed=4, width=90, height=120).save(root / "shoes" / "red" / "b.bmp")
    (root / "notes.txt").write_text("not an image, not picked up")
    (root / "shoes" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")


def test_folder_mirrors_tree_reports_corrupt_file_and_resumes(tmp_path: Path, lite_checkpoint: Path) -> None:
    make_tree(tmp_path / "in")
    out = tmp_path / "out"
    result = run([str(tmp_path / "in"), "-o", str(out)], lite_checkpoint)
    assert result.exit_code == 1, result.output
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["photo_jpg.png", "photo_png.png", "shoes/a.png", "shoes/red/b.png"]
    assert "failed" in result.output and "broken.jpg" in result.output
    assert "4 written, 0 skipped, 1 failed" in result.output
    assert Image.open(out / "shoes" / "red" / "b.png").size == (90, 120)
    assert Image.open(out / "shoes" / "a.png").mode == "RGBA"

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = run([str(tmp_path / "in"), "-o", str(out), "--skip-existing"], lite_checkpoint)
    assert "0 written, 4 skipped, 1 failed" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before


def test_single_file_formats_mask_and_background(tmp_path: Path, lite_checkpoint: Path) -> None:
    src = tmp_path / "item.jpg"
    synthetic_photo().save(src)
    assert (
        run([str(src), "-o", str(tmp_path / "item.webp"), "--format", "webp", "--mask"], lite_checkpoint).exit_code == 0
    )
    assert Image.open(tmp_path / "item.webp").format == "WEBP"
    assert Image.open(tmp_path / "item.mask.png").mode == "L"

    result = run([str(src), "-o", str(tmp_path / "j"), "--format", "jpeg", "--background", "white"], lite_checkpoint)
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "j" / "item.jpg").mode == "RGB"

    run([str(src), "-o", str(tmp_path / "m"), "--mask-only", "--no-refine", "--crop"], lite_checkpoint)
    assert Image.open(tmp_path / "m" / "item.png").mode == "L"


def test_glob_and_default_output_folder(tmp_path: Path, lite_checkpoint: Path, monkeypatch) -> None:
    for i in range(3):
        synthetic_photo(seed=i).save(tmp_path / f"img{i}.png")
    monkeypatch.chdir(tmp_path)
    result = run(["img*.png", "--batch-size", "2", "--workers", "3"], lite_checkpoint)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "bgone-output").iterdir()) == ["img0.png", "img1.png", "img2.png"]


def test_stdin_to_stdout(tmp_path: Path, lite_checkpoint: Path) -> None:
    buf = io.BytesIO()
    synthetic_photo().save(buf, "PNG")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgone.cli",
            "remove",
            "-",
            "--model",
            str(lite_checkpoint),
            "--resolution",
            "64",
            "--device",
            "cpu",
        ],
        input=buf.getvalue(),
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = Image.open(io.BytesIO(proc.stdout))
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (150, 100)


def test_errors_are_one_line(tmp_path: Path, lite_checkpoint: Path) -> None:
    src = tmp_path / "x.png"
    synthetic_photo().save(src)
    proc = subprocess.run(
        [sys.executable, "-m", "bgone.cli", "remove", str(src), "--resolution", "1000"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "multiple of 32" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "bgone.cli", "remove", str(src), "--model", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "[unknown_model]" in proc.stderr and "Traceback" not in proc.stderr
    missing = run([str(tmp_path / "absent.png"), "-o", str(tmp_path / "o")], lite_checkpoint)
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_help_lists_every_option() -> None:
    result = runner.invoke(app, ["remove", "--help"], env={"COLUMNS": "200"})
    for flag in (
        "--model",
        "--resolution",
        "--mask",
        "--mask-only",
        "--no-refine",
        "--format",
        "--background",
        "--crop",
        "--device",
        "--dtype",
        "--batch-size",
        "--skip-existing",
        "--workers",
    ):
        assert flag in result.output
