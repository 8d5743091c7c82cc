"""`bgone remove` on videos as a user runs it: one clip to a file whose extension picks the format, folders
with videos and images mixed, masks, --video-format, --skip-existing, clear refusals. Seeded Swin-T at 64x64."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from bgone.cli import app
from bgone.imaging.video import open_video
from conftest import synthetic_photo
from video_clips import write_clip

runner = CliRunner()


def run(args: list[str], checkpoint: Path, **kw):
    return runner.invoke(
        app, ["remove", *args, "--model", str(checkpoint), "--resolution", "64", "--device", "cpu"], **kw
    )


def frames_of(path: Path, alpha: bool = False) -> int:
    with open_video(path, alpha=alpha) as reader:
        return len(list(reader.frames()))


def test_one_clip_to_webm_with_a_mask(tmp_path: Path, lite_checkpoint: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=5, audio="aac")
    result = run([str(clip), "-o", str(tmp_path / "cut.webm"), "--mask"], lite_checkpoint)
    assert result.exit_code == 0, result.output
    assert frames_of(tmp_path / "cut.webm", alpha=True) == 5 and frames_of(tmp_path / "cut.mask.webm") == 5
    with open_video(tmp_path / "cut.webm") as reader:
        assert reader.info.has_audio
    assert "1 written" in result.output


def test_a_folder_of_videos_and_images_with_a_video_format_and_resume(tmp_path: Path, lite_checkpoint: Path) -> None:
    source = tmp_path / "in"
    (source / "clips").mkdir(parents=True)
    write_clip(source / "clips" / "a.mp4", frames=4)
    write_clip(source / "b.webm", codec="libvpx-vp9", frames=3)
    synthetic_photo(seed=1).save(source / "photo.jpg")
    out = tmp_path / "out"
    result = run([str(source), "-o", str(out), "--video-format", "mov", "--video-quality", "medium"], lite_checkpoint)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "b.mov",
        "clips/a.mov",
        "photo.png",
    ]
    assert frames_of(out / "clips" / "a.mov", alpha=True) == 4 and frames_of(out / "b.mov", alpha=True) == 3
    assert Image.open(out / "photo.png").mode == "RGBA"
    assert "1 image(s) and 2 video(s)" in result.output and "3 written" in result.output
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run([str(source), "-o", str(out), "--video-format", "mov", "--skip-existing"], lite_checkpoint)
    assert "0 written, 3 skipped" in again.output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_mp4_output_is_composited_over_the_background(tmp_path: Path, lite_checkpoint: Path) -> None:
    clip = write_clip(tmp_path / "clip.webm", codec="libvpx-vp9", frames=3)
    result = run([str(clip), "-o", str(tmp_path / "cut.mp4"), "--background", "white"], lite_checkpoint)
    assert result.exit_code == 0, result.output
    assert frames_of(tmp_path / "cut.mp4") == 3


def test_clear_refusals(tmp_path: Path, lite_checkpoint: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=2)
    wrong = run([str(clip), "-o", str(tmp_path / "cut.png")], lite_checkpoint)
    assert wrong.exit_code != 0 and ".webm, .mov, .mp4 or .gif" in str(wrong.exception)  # main() prints it
    bad_format = run([str(clip), "--video-format", "avi"], lite_checkpoint)
    assert bad_format.exit_code != 0 and "use one of mp4, webm, mov, gif" in bad_format.output
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:200])
    failed = run([str(broken), "-o", str(tmp_path / "x.webm")], lite_checkpoint)
    assert failed.exit_code == 1 and "failed" in failed.output and "broken.mp4" in failed.output
    assert not (tmp_path / "x.webm").exists() and not list(tmp_path.glob("*.partial*"))


def test_the_console_script_shows_a_progress_bar_in_frames(tmp_path: Path, lite_checkpoint: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", frames=6)
    bgone = Path(sys.executable).with_name("bgone")
    proc = subprocess.run(
        [str(bgone), "remove", str(clip), "-o", str(tmp_path / "cut.gif"), "--model", str(lite_checkpoint),
         "-r", "64", "--device", "cpu", "--batch-size", "2"],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "160",
                                             "HF_HUB_OFFLINE": "1", "TERM": "dumb"}, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "clip.mp4" in proc.stderr and "6/6" in proc.stderr and "fps" in proc.stderr
    assert (tmp_path / "cut.gif").is_file()
