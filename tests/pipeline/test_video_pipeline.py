"""Video through the pipeline, as users of ``bgone.remove_video_background`` and ``Remover`` meet it: every
format out, masks, progress, cancelling, rotation, timestamps, audio, file objects in, frames out, and the
same masks as the image path gives the same frames. Seeded Swin-T at 64x64, clips of a few tiny frames."""

from __future__ import annotations

import io
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import bgone
from bgone.errors import InputError, RequestCancelledError, VideoLoadError, VideoTooLargeError
from bgone.imaging.video import VideoEncoding, open_video
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.remover import Remover
from bgone.pipeline.video import remove_video, video_frames
from bgone.settings import VideoLimits
from video_clips import clip_image, write_clip

SMALL = "64x64"


@pytest.fixture(scope="module")
def remover(lite_checkpoint: Path) -> Remover:
    # float32 whatever "auto" picks here: the image path's masks are compared frame by frame.
    return Remover(lite_checkpoint, device="cpu", dtype="float32", batch_size=3, operating_resolution=SMALL)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "walk.mp4", size=(80, 48), frames=7, audio="aac")


@pytest.mark.parametrize(("fmt", "alpha"), [("webm", True), ("mov", True), ("mp4", False), ("gif", True)])
def test_every_format_keeps_frames_timing_and_alpha_where_it_can(
    remover: Remover, clip: Path, tmp_path: Path, fmt: str, alpha: bool
) -> None:
    out = tmp_path / f"out.{fmt}"
    result = remove_video(remover, clip, out, encoding=VideoEncoding(format=fmt))
    assert result.path == out and out.is_file() and result.frames == 7
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left behind
    with open_video(out, alpha=alpha) as reader:
        frames = list(reader.frames())
        assert len(frames) == 7 and reader.info.display_size == (80, 48)
        if alpha:
            alphas = np.asarray(frames[3].image)[..., 3]
            assert alphas.min() < 128 < alphas.max()  # a cut-out: transparent and opaque pixels
        if fmt != "gif":
            assert reader.info.has_audio  # the audio track is kept
            assert abs(reader.info.duration - 7 / 25) < 0.05


def test_masks_equal_the_image_paths_masks(remover: Remover, clip: Path, tmp_path: Path) -> None:
    """The network sees each frame exactly as the image path would: same masks, frame by frame."""
    with open_video(clip) as reader:
        originals = [frame.image for frame in reader.frames()]
    expected = [remover.remove(image).mask for image in originals]
    got = [mask for _, _, mask in video_frames(remover, clip)]
    assert len(got) == len(expected) == 7
    for ours, theirs in zip(got, expected, strict=True):
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_mask_video_and_progress(remover: Remover, clip: Path, tmp_path: Path) -> None:
    steps = []
    result = remove_video(
        remover,
        clip,
        tmp_path / "out.webm",
        mask_output=tmp_path / "out.mask.webm",
        progress=steps.append,
    )
    assert [s.done for s in steps] == [3, 6, 7]  # one report per batch of three frames
    assert all(s.total == 7 for s in steps) and steps[-1].frames_per_second > 0
    assert "7/7 frames" in str(steps[-1])
    with open_video(result.mask_path) as reader:  # type: ignore[arg-type]
        masks = [np.asarray(frame.image.convert("L")).astype(int) for frame in reader.frames()]
    with open_video(clip) as reader:
        expected = [np.asarray(remover.remove(frame.image).mask).astype(int) for frame in reader.frames()]
    assert len(masks) == 7
    for ours, theirs in zip(masks, expected, strict=True):
        assert np.abs(ours - theirs).mean() < 4  # the mask itself, through a lossy codec


def test_a_cancel_stops_within_one_batch_and_leaves_no_file(remover: Remover, clip: Path, tmp_path: Path) -> None:
    asked = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 1  # the second batch is refused

    steps = []
    with pytest.raises(RequestCancelledError):
        remove_video(remover, clip, tmp_path / "out.webm", progress=steps.append, should_stop=should_stop)
    assert [s.done for s in steps] == [3]
    assert list(tmp_path.iterdir()) == []


def test_rotation_is_kept_and_the_network_sees_the_frame_upright(remover: Remover, tmp_path: Path) -> None:
    rotated = write_clip(tmp_path / "phone.mp4", size=(64, 48), frames=4, rotation=90)
    result = remove_video(remover, rotated, tmp_path / "out.mov", encoding=VideoEncoding(format="mov"))
    with open_video(result.path, alpha=True) as reader:
        assert reader.info.rotation == 90 and reader.info.display_size == (48, 64)
        stored = next(reader.frames()).image
    assert stored.size == (64, 48)  # stored as the input stores it, shown upright by the rotation
    upright = stored.rotate(-90, expand=True)
    expected = remover.remove(clip_image(0, (64, 48)).rotate(-90, expand=True)).mask
    alpha = np.asarray(upright)[..., 3].astype(int)
    assert np.abs(alpha - np.asarray(expected).astype(int)).mean() < 12  # ProRes 10-bit alpha, refinement aside


def test_variable_frame_rate_timestamps_survive(remover: Remover, tmp_path: Path) -> None:
    pts = [0, 2, 3, 7, 8, 15]
    vfr = write_clip(tmp_path / "vfr.webm", codec="libvpx-vp9", pts=pts, time_base=Fraction(1, 50))
    result = remove_video(remover, vfr, tmp_path / "out.webm")
    with open_video(result.path) as reader:
        times = [round(frame.time, 3) for frame in reader.frames()]
    assert times == [round(p / 50, 3) for p in pts]


def test_file_objects_in_and_limits(remover: Remover, clip: Path, tmp_path: Path) -> None:
    with clip.open("rb") as handle:
        result = remove_video(remover, handle, tmp_path / "out.gif", encoding=VideoEncoding(format="gif"))
    assert result.frames == 7
    with pytest.raises(VideoTooLargeError, match="limit"):
        remove_video(remover, io.BytesIO(clip.read_bytes()), tmp_path / "x.webm", limits=VideoLimits(max_bytes=100))
    with pytest.raises(VideoTooLargeError, match="frames"):
        remove_video(remover, clip, tmp_path / "x.webm", limits=VideoLimits(max_frames=3))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(VideoLoadError):
        remove_video(remover, broken, tmp_path / "x.webm")
    with pytest.raises(InputError, match="crop applies to images only"):
        remove_video(remover, clip, tmp_path / "x.webm", options=RemovalOptions(crop=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4", "out.gif"]


def test_the_public_function_picks_the_format_from_the_file_name(lite_checkpoint: Path, clip: Path, tmp_path: Path) -> None:
    result = bgone.remove_video_background(
        clip, tmp_path / "cut.mp4", model=lite_checkpoint, device="cpu", operating_resolution=64, background="#00ff00"
    )
    assert result.encoding.format == "mp4" and result.encoding.background == (0, 255, 0)
    with open_video(result.path) as reader:
        written = np.asarray(next(reader.frames()).image).astype(float)
    same = Remover(lite_checkpoint, device="cpu", operating_resolution=64)  # the model the function used
    _, cutout, _ = next(video_frames(same, clip))
    rgba = np.asarray(cutout).astype(float)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + np.array([0, 255, 0]) * (1 - alpha)  # the cut-out over the green
    assert np.abs(written - expected).mean() < 10  # H.264 4:2:0 is lossy
    with pytest.raises(InputError, match=r"\.webm, \.mov, \.mp4 or \.gif"):
        bgone.remove_video_background(clip, tmp_path / "cut.png", model=lite_checkpoint, device="cpu")
