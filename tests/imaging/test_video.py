"""bgone.imaging.video: reading (limits, errors, codecs, rotation, timestamps), writing (alpha per format,
masks, quality, odd sizes, timing, rotation, audio, streaming memory), and fetch_to_file.

Every clip is made here with PyAV (tests/video_clips.py): tiny sizes and few frames, except the one
1280x720 streaming-memory check, which runs in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image

from bgone.errors import FileDownloadError, InputError, VideoLoadError, VideoTooLargeError
from bgone.imaging import video as video_module
from bgone.imaging.fetch import fetch_to_file
from bgone.imaging.video import (
    MIME_TYPES,
    QUALITIES,
    VIDEO_EXTENSIONS,
    VIDEO_FORMATS,
    WRITE_MODES,
    VideoEncoding,
    VideoFrame,
    VideoInfo,
    VideoReader,
    VideoWriter,
    is_video_name,
    open_video,
)
from bgone.settings import VideoLimits
from video_clips import (
    alpha_array,
    clip_array,
    corrupted_copy,
    cutout_image,
    mask_image,
    truncated_copy,
    write_clip,
)

SIZE = (64, 48)
VFR_PTS = [0, 40, 70, 150, 160, 300, 340, 380, 420, 500]  # ms: irregular gaps, a 10 ms one, a 140 ms one
MS = Fraction(1, 1000)


# ----------------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The shared source clips, written once for the module."""
    d = tmp_path_factory.mktemp("clips")
    return {
        "mp4": write_clip(d / "plain.mp4", frames=10),
        "audio_mp4": write_clip(d / "audio.mp4", frames=10, audio="aac"),
        "vfr_mkv": write_clip(d / "vfr.mkv", pts=VFR_PTS, time_base=MS, codec="libvpx-vp9", audio="libopus"),
        # No B-frames: MP4 takes sample durations from decode times, which reordering shifts in a VFR clip.
        "vfr_mp4": write_clip(d / "vfr.mp4", pts=VFR_PTS, time_base=MS, options={"bf": "0"}),
        "rot90": write_clip(d / "rot90.mp4", frames=5, rotation=90, audio="aac"),
        "odd": write_clip(d / "odd.webm", size=(65, 47), frames=6, codec="libvpx-vp9"),
        "pcm_mov": write_clip(d / "pcm.mov", frames=8, codec="mpeg4", audio="pcm_s16le", audio_rate=44_100),
    }


def read_all(path: Path, **kwargs: Any) -> tuple[VideoInfo, list[VideoFrame]]:
    with open_video(path, **kwargs) as reader:
        return reader.info, list(reader.frames())


def write_all(
    path: Path,
    source: Path,
    encoding: VideoEncoding,
    *,
    mask: bool = False,
    audio: bool = True,
) -> VideoWriter:
    """Re-encode ``source`` as the pipeline would: each frame's cut-out (or mask) at the frame's pts."""
    with open_video(source) as reader:
        size = (reader.info.width, reader.info.height)
        with VideoWriter(path, encoding, like=reader.info, audio_from=reader if audio else None, mask=mask) as writer:
            for frame in reader.frames():
                image = mask_image(frame.index, size) if mask else cutout_image(frame.index, size)
                writer.write(image, frame)
    return writer


def streams_of(path: Path) -> dict[str, Any]:
    """What a player sees in ``path``: codecs, pixel format, stream metadata."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = list(container.streams.audio)
        return {
            "video": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "profile": video.profile,
            "metadata": dict(video.metadata),
            "audio": audio[0].codec_context.name if audio else None,
            "audio_seconds": float(audio[0].duration * audio[0].time_base) if audio and audio[0].duration else None,
            "format": container.format.name,
        }


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# ----------------------------------------------------------------------------------------------------------
# the constants


def test_constants() -> None:
    assert VIDEO_FORMATS == ("mp4", "webm", "mov", "gif")
    assert {".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"} == VIDEO_EXTENSIONS
    assert ".gif" not in VIDEO_EXTENSIONS  # animated GIFs stay images
    assert MIME_TYPES == {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "gif": "image/gif"}
    assert QUALITIES == ("low", "medium", "high", "maximum")
    assert WRITE_MODES == ("fast", "balanced", "small")
    assert VideoEncoding("mov").mime_type == "video/quicktime"
    assert VideoEncoding() == VideoEncoding("webm", "high", "balanced", (0, 0, 0))
    assert is_video_name("https://x.test/a/Clip.MP4?sig=1#t=2")
    assert is_video_name("holiday.mkv")
    assert not is_video_name("anim.gif")
    assert not is_video_name("photo.jpg?x=.mp4")


@pytest.mark.parametrize(
    ("field", "value"), [("format", "avi"), ("quality", "ultra"), ("write_mode", "slowest"), ("background", (0, 0))]
)
def test_encoding_rejects_unknown_values(field: str, value: Any) -> None:
    with pytest.raises(InputError, match=r"use one of|three integers"):
        VideoEncoding(**{field: value})


# ----------------------------------------------------------------------------------------------------------
# reading


def test_open_reads_the_headers(clips: dict[str, Path]) -> None:
    with open_video(clips["audio_mp4"]) as reader:
        info = reader.info
        assert reader.path == clips["audio_mp4"]
    assert (info.width, info.height) == SIZE
    assert info.display_size == SIZE
    assert info.rotation == 0
    assert info.frame_count == 10
    assert info.duration == pytest.approx(0.4, abs=0.001)
    assert info.average_rate == 25
    assert info.codec == "h264"
    assert "mp4" in info.container
    assert info.has_audio
    assert not read_all(clips["mp4"])[0].has_audio


def test_frames_stream_in_presentation_order(clips: dict[str, Path]) -> None:
    info, frames = read_all(clips["mp4"])
    assert [f.index for f in frames] == list(range(10))
    assert [f.pts for f in frames] == [round(i / 25 / info.time_base) for i in range(10)]
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(10)])
    for frame in frames:
        assert frame.image.mode == "RGB"
        assert frame.image.size == SIZE
        assert mean_abs(np.asarray(frame.image), clip_array(frame.index)) < 6


def test_frames_can_be_read_twice(clips: dict[str, Path]) -> None:
    with open_video(clips["mp4"]) as reader:
        first = [f.pts for f in reader.frames()]
        again = [f.pts for f in reader.frames()]
    assert first == again and len(first) == 10


@pytest.mark.parametrize(
    ("name", "kwargs", "codec"),
    [
        ("vp9.webm", {"codec": "libvpx-vp9"}, "vp9"),
        ("vp8.webm", {"codec": "libvpx"}, "vp8"),
        ("mpeg4.avi", {"codec": "mpeg4"}, "mpeg4"),
        ("mjpeg.avi", {"codec": "mjpeg", "pix_fmt": "yuvj420p"}, "mjpeg"),
        ("prores.mov", {"codec": "prores_ks", "pix_fmt": "yuv422p10le"}, "prores"),
        ("ffv1.mkv", {"codec": "ffv1", "pix_fmt": "yuv420p"}, "ffv1"),
    ],
)
def test_any_codec_ffmpeg_decodes(tmp_path: Path, name: str, kwargs: dict[str, str], codec: str) -> None:
    info, frames = read_all(write_clip(tmp_path / name, frames=4, **kwargs))
    assert info.codec == codec
    assert len(frames) == 4
    assert mean_abs(np.asarray(frames[2].image), clip_array(2)) < 8


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_from_the_display_matrix(tmp_path: Path, rotation: int) -> None:
    info, frames = read_all(write_clip(tmp_path / "r.mp4", frames=2, rotation=rotation))
    assert info.rotation == rotation
    assert info.display_size == ((48, 64) if rotation in (90, 270) else (64, 48))
    assert frames[0].image.size == (64, 48)  # frames come as stored: turning them is the caller's choice


def test_rotation_from_the_rotate_tag() -> None:
    # Old muxers wrote a clockwise `rotate` tag instead of a display matrix; FFmpeg no longer does, so it
    # is checked on the function that reads both.
    unrotated = SimpleNamespace(rotation=0)
    assert video_module._rotation(unrotated, SimpleNamespace(metadata={"rotate": "90"})) == 90
    assert video_module._rotation(unrotated, SimpleNamespace(metadata={"rotate": "-90"})) == 270
    assert video_module._rotation(unrotated, SimpleNamespace(metadata={})) == 0
    # The matrix wins, and PyAV reports it counter-clockwise.
    assert video_module._rotation(SimpleNamespace(rotation=-90), SimpleNamespace(metadata={"rotate": "0"})) == 90


def test_vfr_timestamps_are_read_as_stored(clips: dict[str, Path]) -> None:
    info, frames = read_all(clips["vfr_mkv"])
    assert info.time_base == MS
    assert [f.pts for f in frames] == VFR_PTS
    assert [f.time for f in frames] == pytest.approx([p / 1000 for p in VFR_PTS])


def test_alpha_needs_libvpx_to_come_back(tmp_path: Path) -> None:
    out = tmp_path / "a.webm"
    write_all(out, write_clip(tmp_path / "s.mp4", frames=3), VideoEncoding("webm"), audio=False)
    _, plain = read_all(out)
    _, with_alpha = read_all(out, alpha=True)
    assert plain[0].image.mode == "RGB"
    assert with_alpha[0].image.mode == "RGBA"
    # FFmpeg's native vp9 decoder drops the alpha plane: the stream itself says yuv420p.
    with av.open(str(out)) as container:
        native = next(container.decode(video=0))
        assert native.format.name == "yuv420p"
    assert mean_abs(np.asarray(with_alpha[1].image)[..., 3], alpha_array(1)) < 3


def test_alpha_reader_of_a_clip_without_alpha_is_opaque(clips: dict[str, Path]) -> None:
    _, frames = read_all(clips["mp4"], alpha=True)
    assert frames[0].image.mode == "RGBA"
    assert np.asarray(frames[0].image)[..., 3].min() == 255


# ----------------------------------------------------------------------------------------------------------
# limits


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (VideoLimits(max_bytes=1000), ["bytes", "1,000", "max_bytes"]),
        (VideoLimits(max_seconds=0.25), ["0.4 s", "0.25 s", "max_seconds"]),
        (VideoLimits(max_frames=9), ["10 frames", "9 frames", "max_frames"]),
        (VideoLimits(max_pixels=64 * 48 - 1), ["64x48", "3,072", "3,071", "max_pixels"]),
    ],
    ids=["bytes", "seconds", "frames", "pixels"],
)
def test_limits_from_the_headers_before_any_frame_is_decoded(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, limits: VideoLimits, words: list[str]
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("a frame was decoded before the limits were checked")

    monkeypatch.setattr(VideoReader, "_decode", no_decoding)
    with pytest.raises(VideoTooLargeError) as caught:
        open_video(clips["mp4"], limits=limits)
    message = str(caught.value)
    assert "plain.mp4" in message
    for word in words:
        assert word in message
    assert caught.value.http_status == 413 and caught.value.error_type == "video_too_large"


def test_limits_at_their_values_pass(clips: dict[str, Path]) -> None:
    size = clips["mp4"].stat().st_size
    limits = VideoLimits(max_bytes=size, max_seconds=0.4, max_frames=10, max_pixels=64 * 48)
    assert len(read_all(clips["mp4"], limits=limits)[1]) == 10


def test_frames_past_the_limits_stop_while_streaming(clips: dict[str, Path]) -> None:
    # Headers can lie (or only estimate): frames() counts for itself.
    with open_video(clips["mp4"]) as reader:
        reader.limits = VideoLimits(max_frames=4)
        with pytest.raises(VideoTooLargeError, match="more than 4 frames"):
            list(reader.frames())
    with open_video(clips["mp4"]) as reader:
        reader.limits = VideoLimits(max_seconds=0.1)
        with pytest.raises(VideoTooLargeError, match=r"past 0\.1 s"):
            list(reader.frames())


# ----------------------------------------------------------------------------------------------------------
# broken inputs


def one_line_load_error(path: Path, *, iterate: bool = False) -> str:
    with pytest.raises(VideoLoadError) as caught, open_video(path) as reader:
        if iterate:
            for _ in reader.frames():
                pass
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.http_status == 422 and caught.value.error_type == "video_load_error"
    return message


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_bytes(b"these are not the frames you are looking for\n" * 20)
    assert "not a video FFmpeg can read" in one_line_load_error(path)


def test_empty_missing_and_directory(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty" in one_line_load_error(tmp_path / "empty.mp4")
    assert "no such file" in one_line_load_error(tmp_path / "missing.mp4")
    assert "not a file" in one_line_load_error(tmp_path)


def test_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "song.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=48_000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48_000, 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert "no video stream (it has audio)" in one_line_load_error(path)


def test_codec_without_a_decoder(clips: dict[str, Path], tmp_path: Path) -> None:
    # An H.264 Matroska file whose CodecID is renamed to one FFmpeg does not know (same length: the EBML
    # sizes stay valid).
    mkv = write_clip(tmp_path / "h264.mkv", frames=3)
    data = mkv.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    (tmp_path / "unknown.mkv").write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QUUXY/ISO/AVC"))
    assert "cannot decode" in one_line_load_error(tmp_path / "unknown.mkv")


@pytest.mark.parametrize(("fraction", "words"), [(0.3, "not a video FFmpeg can read"), (0.8, "upload it again")])
def test_truncated_mp4(clips: dict[str, Path], tmp_path: Path, fraction: float, words: str) -> None:
    # The index (moov) sits at the end unless +faststart moved it: a cut file cannot even be opened, or (cut
    # inside the index) shows no video stream.
    cut = truncated_copy(clips["mp4"], tmp_path / "cut.mp4", fraction)
    assert words in one_line_load_error(cut)


def test_truncated_faststart_mp4_breaks_while_streaming(tmp_path: Path) -> None:
    source = write_clip(tmp_path / "fs.mp4", frames=30, container_options={"movflags": "+faststart"})
    cut = truncated_copy(source, tmp_path / "cut.mp4", 0.6)
    with open_video(cut) as reader:  # the index is complete: it opens
        assert reader.info.frame_count == 30
        seen = 0
        with pytest.raises(VideoLoadError, match="truncated or corrupt"):
            for _ in reader.frames():
                seen += 1
    assert 0 < seen < 30  # it broke mid-way, after some frames had been handed out


def test_truncated_webm_ends_early_and_says_so(tmp_path: Path) -> None:
    # Matroska demuxers stop quietly at the cut; the declared duration gives it away.
    source = write_clip(tmp_path / "long.webm", frames=30, codec="libvpx-vp9")
    cut = truncated_copy(source, tmp_path / "cut.webm", 0.5)
    message = one_line_load_error(cut, iterate=True)
    assert "header declares 1.20 s" in message and "upload the complete file" in message


def test_an_edit_list_or_a_long_last_frame_is_not_truncation(tmp_path: Path) -> None:
    # A stream copy cut at a non-key frame: the first 10 of 30 samples lie before the edit list's start and are
    # never shown, while the header still counts 30 frames (and 0.8 s).
    source = write_clip(tmp_path / "src.mp4", frames=30, options={"g": "30"})
    with av.open(str(source)) as original, av.open(str(tmp_path / "edited.mp4"), "w") as edited:
        stream = original.streams.video[0]
        copy = edited.add_stream_from_template(stream)
        shift = round(10 / 25 / stream.time_base)
        for packet in original.demux(stream):
            if packet.size:
                packet.pts, packet.dts, packet.stream = packet.pts - shift, packet.dts - shift, copy
                edited.mux(packet)
    info, frames = read_all(tmp_path / "edited.mp4")
    assert (info.frame_count, len(frames)) == (30, 20)  # the container's count includes the hidden frames
    assert frames[-1].time == pytest.approx(0.76)
    # A screen recording that holds its last frame for 3 s: the span is short, the count is complete.
    held = write_clip(tmp_path / "held.mp4", frames=10, time_base=MS, last_duration=3000)
    info, frames = read_all(held)
    assert info.duration == pytest.approx(3.36) and len(frames) == 10


@pytest.mark.parametrize("name", ["bad.mp4", "bad.mkv"])
def test_corrupt_data_mid_way(tmp_path: Path, name: str) -> None:
    options = {"movflags": "+faststart"}  # the index first: the damage hits the frames, not the index
    source = write_clip(tmp_path / f"src{Path(name).suffix}", frames=30, pix_fmt="yuv444p", container_options=options)
    bad = corrupted_copy(source, tmp_path / name, start=0.5, length=2000)
    assert "truncated or corrupt" in one_line_load_error(bad, iterate=True)


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mov"])
def test_damaged_files_raise_only_video_errors(tmp_path: Path, suffix: str) -> None:
    """Flipped bits, overwritten blocks and cuts anywhere (headers, index, frames, audio): reading (and
    re-encoding with the audio) either works or raises a VideoLoadError, never a PyAV exception."""
    codec = {".mp4": "libx264", ".webm": "libvpx-vp9", ".mov": "prores_ks"}[suffix]
    audio = {".mp4": "aac", ".webm": "libopus", ".mov": "pcm_s16le"}[suffix]
    pix_fmt = "yuv422p10le" if codec == "prores_ks" else None
    data = write_clip(tmp_path / f"src{suffix}", frames=8, codec=codec, pix_fmt=pix_fmt, audio=audio).read_bytes()
    rng = np.random.default_rng(7)
    outcomes = set()
    for attempt in range(30):
        damaged = bytearray(data)
        kind = attempt % 3
        if kind == 0:
            for position in rng.integers(0, len(damaged), 10):
                damaged[position] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:
            start = int(rng.integers(0, len(damaged)))
            damaged[start : start + 300] = rng.integers(0, 256, len(damaged[start : start + 300]), np.uint8).tobytes()
        else:
            damaged = damaged[: int(rng.integers(0, len(damaged)))]
        path = tmp_path / f"damaged{suffix}"
        path.write_bytes(bytes(damaged))
        out = tmp_path / "out.mp4"
        out.unlink(missing_ok=True)
        encoding = VideoEncoding("mp4", "low", "fast")
        try:
            with (
                open_video(path, alpha=attempt % 2 == 0) as reader,
                VideoWriter(out, encoding, like=reader.info, audio_from=reader) as writer,
            ):
                for frame in reader.frames():
                    writer.write(frame.image.resize((reader.info.width, reader.info.height)), frame)
            outcomes.add("read")
        except VideoLoadError:
            outcomes.add("refused")
            assert not out.exists()
    assert outcomes == {"read", "refused"}


# ----------------------------------------------------------------------------------------------------------
# writing: alpha and colour per format


def test_webm_is_vp9_with_an_alpha_plane(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cut.webm"
    write_all(out, clips["mp4"], VideoEncoding("webm"))
    seen = streams_of(out)
    assert (seen["video"], seen["format"]) == ("vp9", "matroska,webm")
    assert seen["metadata"].get("alpha_mode") == "1"
    _, frames = read_all(out, alpha=True)
    assert len(frames) == 10
    for frame in frames:
        rgba = np.asarray(frame.image)
        expected = alpha_array(frame.index)
        assert mean_abs(rgba[..., 3], expected) < 3
        assert rgba[..., 3][expected == 0].mean() < 2  # transparent stays transparent (a little ringing at edges)
        assert rgba[..., 3][expected == 255].mean() > 253
        opaque = expected == 255
        assert mean_abs(rgba[..., :3][opaque], clip_array(frame.index)[opaque]) < 8


def test_mov_is_prores_4444_with_alpha(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cut.mov"
    write_all(out, clips["mp4"], VideoEncoding("mov"))
    seen = streams_of(out)
    assert (seen["video"], seen["profile"]) == ("prores", "4444")
    assert seen["pix_fmt"].startswith("yuva444p")
    _, frames = read_all(out, alpha=True)
    rgba = np.asarray(frames[4].image)
    assert mean_abs(rgba[..., 3], alpha_array(4)) < 1
    opaque = alpha_array(4) == 255
    assert mean_abs(rgba[..., :3][opaque], clip_array(4)[opaque]) < 3


def test_mp4_is_h264_over_the_background_and_streams(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cut.mp4"
    write_all(out, clips["mp4"], VideoEncoding("mp4", background=(0, 255, 0)))
    seen = streams_of(out)
    assert (seen["video"], seen["pix_fmt"]) == ("h264", "yuv420p")
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # +faststart: the index first, so browsers can stream
    _, frames = read_all(out)
    rgb = np.asarray(frames[3].image).astype(np.int16)
    alpha = alpha_array(3)
    assert np.abs(rgb[alpha == 0] - (0, 255, 0)).mean() < 8  # transparent → the background
    assert mean_abs(rgb[alpha == 255], clip_array(3)[alpha == 255]) < 8
    ramp = rgb[-2, 32]  # half-transparent: between the colour and green
    a = float(alpha[-2, 32]) / 255
    expected = clip_array(3)[-2, 32].astype(float) * a + np.array([0.0, 255.0, 0.0]) * (1 - a)
    assert np.abs(ramp - expected).max() < 16


def test_gif_has_binary_transparency_and_loops(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cut.gif"
    write_all(out, clips["mp4"], VideoEncoding("gif"))
    with Image.open(out) as gif:  # Pillow composes frames as a browser does (disposal, local palettes)
        assert gif.n_frames == 10
        assert gif.info["loop"] == 0  # forever
        for index in range(gif.n_frames):
            gif.seek(index)
            rgba = np.asarray(gif.convert("RGBA"))
            visible = alpha_array(index) >= 128
            assert np.array_equal(rgba[..., 3] == 255, visible)
            assert set(np.unique(rgba[..., 3])) <= {0, 255}
            assert mean_abs(rgba[..., :3][visible], clip_array(index)[visible]) < 6
    assert not streams_of(out)["audio"]


# ----------------------------------------------------------------------------------------------------------
# writing: masks, quality, sizes


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
def test_mask_videos_are_grey(clips: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"mask.{fmt}"
    write_all(out, clips["mp4"], VideoEncoding(fmt), mask=True)
    seen = streams_of(out)
    if fmt == "mov":
        assert seen["pix_fmt"].startswith("yuv444p") and seen["profile"] == "4444"
    if fmt in ("mp4", "webm"):
        assert seen["pix_fmt"] == "yuv420p"
        assert "alpha_mode" not in seen["metadata"]
    _, frames = read_all(out)
    rgb = np.asarray(frames[5].image).astype(np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 1]).max() <= 2 and np.abs(rgb[..., 1] - rgb[..., 2]).max() <= 2
    assert mean_abs(rgb[..., 1], alpha_array(5)) < 3
    if fmt == "gif":
        with Image.open(out) as gif:
            palette = np.array(gif.getpalette() or [0, 0, 0]).reshape(-1, 3)  # Pillow opens a grey GIF as "L"
            assert gif.mode == "L" or (palette[:, :1] == palette).all()


def test_mask_writer_takes_l_and_cutout_writer_rgba(clips: dict[str, Path], tmp_path: Path) -> None:
    info, frames = read_all(clips["mp4"])
    with VideoWriter(tmp_path / "m.webm", VideoEncoding(), like=info, mask=True) as writer:
        with pytest.raises(ValueError, match="takes 'L'"):
            writer.write(cutout_image(0), frames[0])
        with pytest.raises(ValueError, match="not the source's 64x48"):
            writer.write(mask_image(0, (32, 24)), frames[0])
        writer.write(mask_image(0), frames[0])
    with VideoWriter(tmp_path / "c.webm", VideoEncoding(), like=info) as writer:
        with pytest.raises(ValueError, match="takes 'RGBA'"):
            writer.write(mask_image(0), frames[0])
        writer.write(clip_image_rgb(0), frames[0])  # RGB is taken as opaque


def clip_image_rgb(index: int) -> Image.Image:
    return Image.fromarray(clip_array(index), "RGB")


def test_encoder_settings_follow_quality_and_write_mode() -> None:
    def settings(fmt: str, quality: str = "high", mode: str = "balanced") -> dict[str, str]:
        return video_module._codec_for(VideoEncoding(fmt, quality, mode), mask=False).options

    assert [settings("mp4", q)["crf"] for q in QUALITIES] == ["28", "23", "18", "12"]
    assert [settings("mp4", mode=m)["preset"] for m in WRITE_MODES] == ["veryfast", "medium", "slow"]
    assert [settings("webm", q)["crf"] for q in QUALITIES] == ["42", "36", "30", "20"]
    assert settings("webm")["b"] == "0"
    assert [(settings("webm", mode=m)["deadline"], settings("webm", mode=m)["cpu-used"]) for m in WRITE_MODES] == [
        ("realtime", "8"),
        ("good", "4"),
        ("good", "1"),
    ]
    assert all(settings("mov", q)["profile"] == "4444" for q in QUALITIES)
    assert [settings("mov", q).get("global_quality") for q in QUALITIES] == [str(16 * 118), str(8 * 118), None, "118"]
    assert video_module._codec_for(VideoEncoding("mp4"), mask=False).container_options == {"movflags": "+faststart"}


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mov"])
def test_quality_changes_the_file_size(tmp_path: Path, fmt: str) -> None:
    source = write_clip(tmp_path / "s.mp4", size=(160, 120), frames=5, options={"crf": "5"})
    sizes = {}
    for quality in ("low", "maximum"):
        out = tmp_path / f"{quality}.{fmt}"
        write_all(out, source, VideoEncoding(fmt, quality, "fast"), audio=False)
        sizes[quality] = out.stat().st_size
    assert sizes["low"] < sizes["maximum"]


def test_gif_quality_sets_the_palette_size(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "low.gif"
    write_all(out, clips["mp4"], VideoEncoding("gif", "low"))
    with Image.open(out) as gif:
        for index in range(gif.n_frames):
            gif.seek(index)
            colours = np.unique(np.asarray(gif.convert("RGBA")).reshape(-1, 4), axis=0)
            assert len(colours) <= 32 + 1  # 32 colours and the transparent entry


@pytest.mark.parametrize(("fmt", "size"), [("mp4", (66, 48)), ("webm", (65, 47)), ("mov", (65, 47)), ("gif", (65, 47))])
def test_odd_sizes(clips: dict[str, Path], tmp_path: Path, fmt: str, size: tuple[int, int]) -> None:
    out = tmp_path / f"odd.{fmt}"
    writer = write_all(out, clips["odd"], VideoEncoding(fmt, background=(255, 255, 255)))
    assert writer.size == size
    info, frames = read_all(out)
    assert (info.width, info.height) == size
    if fmt in ("webm", "mov"):  # the alpha plane too, at the odd size
        rgba = np.asarray(read_all(out, alpha=True)[1][2].image)
        assert mean_abs(rgba[..., 3], alpha_array(2, (65, 47))) < 3
    if fmt == "mp4":  # padded by one pixel on the right and bottom, repeating the edge
        rgb = np.asarray(frames[2].image).astype(np.int16)
        assert np.abs(rgb[:, 65] - rgb[:, 64]).mean() < 8
        assert np.abs(rgb[47, :65] - rgb[46, :65]).mean() < 8


# ----------------------------------------------------------------------------------------------------------
# writing: timing and rotation


@pytest.mark.parametrize("fmt", VIDEO_FORMATS)
@pytest.mark.parametrize("source", ["vfr_mkv", "vfr_mp4"])
def test_vfr_timestamps_survive(clips: dict[str, Path], tmp_path: Path, fmt: str, source: str) -> None:
    out = tmp_path / f"vfr.{fmt}"
    write_all(out, clips[source], VideoEncoding(fmt))
    source_info, source_frames = read_all(clips[source])
    info, frames = read_all(out)
    assert len(frames) == len(source_frames) == len(VFR_PTS)
    if fmt in ("mp4", "mov"):  # the others have no frame count in their headers: it is estimated
        assert info.frame_count == len(VFR_PTS)
    # Within one tick of the coarser time base (GIF counts in hundredths, WebM in milliseconds).
    tick = float(max(source_info.time_base, info.time_base))
    for got, want in zip(frames, source_frames, strict=True):
        assert got.time == pytest.approx(want.time, abs=tick)
    # MP4 sums sample durations from decode times, which H.264's B-frame reordering shifts in a VFR clip:
    # its duration may be off by one reordered gap (every pts is exact).
    assert info.duration == pytest.approx(source_info.duration, abs=0.03 if fmt == "mp4" else tick)


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mov"])
def test_frame_count_rate_and_duration_survive(clips: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"cfr.{fmt}"
    write_all(out, clips["audio_mp4"], VideoEncoding(fmt))
    info, frames = read_all(out)
    assert len(frames) == 10
    assert info.average_rate == 25
    assert info.duration == pytest.approx(0.4, abs=0.041)
    assert [f.time for f in frames] == pytest.approx([i / 25 for i in range(10)], abs=0.001)


@pytest.mark.parametrize("fmt", ["mp4", "webm", "mov"])
def test_rotation_is_written_back(clips: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"rot.{fmt}"
    write_all(out, clips["rot90"], VideoEncoding(fmt))
    info, frames = read_all(out)
    assert info.rotation == 90
    assert frames[0].image.size == (64, 48)  # still stored sideways; players turn it
    assert info.display_size == (48, 64)


def test_gif_frames_are_turned_upright(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "rot.gif"
    writer = write_all(out, clips["rot90"], VideoEncoding("gif"))
    assert writer.size == (48, 64)
    info, frames = read_all(out, alpha=True)
    assert info.rotation == 0 and (info.width, info.height) == (48, 64)
    upright = np.asarray(cutout_image(2).transpose(Image.Transpose.ROTATE_270))  # 90 degrees clockwise
    got = np.asarray(frames[2].image)
    visible = upright[..., 3] >= 128
    assert np.array_equal(got[..., 3] == 255, visible)
    assert mean_abs(got[..., :3][visible], upright[..., :3][visible]) < 6


# ----------------------------------------------------------------------------------------------------------
# writing: audio


@pytest.mark.parametrize(
    ("source", "fmt", "codec", "how"),
    [
        ("audio_mp4", "mp4", "aac", "copied (aac)"),
        ("audio_mp4", "mov", "aac", "copied (aac)"),
        ("audio_mp4", "webm", "opus", "re-encoded (aac → libopus)"),
        ("vfr_mkv", "webm", "opus", "copied (opus)"),
        ("vfr_mkv", "mp4", "aac", "re-encoded (opus → aac)"),
        ("pcm_mov", "mov", "pcm_s16le", "copied (pcm_s16le)"),
        ("pcm_mov", "mp4", "aac", "re-encoded (pcm_s16le → aac)"),
    ],
)
def test_audio_is_kept(clips: dict[str, Path], tmp_path: Path, source: str, fmt: str, codec: str, how: str) -> None:
    out = tmp_path / f"sound.{fmt}"
    writer = write_all(out, clips[source], VideoEncoding(fmt))
    assert writer.audio == how
    seen = streams_of(out)
    assert seen["audio"] == codec
    with av.open(str(out)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
        rate = container.streams.audio[0].codec_context.sample_rate
    source_info = read_all(clips[source])[0]
    assert samples / rate == pytest.approx(source_info.duration, abs=0.08)


def test_gif_has_no_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    writer = write_all(tmp_path / "a.gif", clips["audio_mp4"], VideoEncoding("gif"))
    assert writer.audio == "none"


def test_audio_is_interleaved_as_frames_are_written(clips: dict[str, Path], tmp_path: Path) -> None:
    """The writer advances the audio demux to each frame's time, so the muxer never waits on (and
    buffers) a whole track."""
    events: list[tuple[str, float]] = []

    class Spy:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def mux(self, packets: Any) -> None:
            for packet in packets if isinstance(packets, list) else [packets]:
                if packet.pts is not None:
                    events.append((packet.stream.type, float(packet.pts * packet.time_base)))
            self.inner.mux(packets)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    source = write_clip(tmp_path / "long.mp4", frames=50, audio="aac")
    with (
        open_video(source) as reader,
        VideoWriter(tmp_path / "o.mov", VideoEncoding("mov"), like=reader.info, audio_from=reader) as writer,
    ):
        writer._output = Spy(writer._output)
        for frame in reader.frames():
            writer.write(cutout_image(frame.index), frame)
            # Everything the source has up to this frame is muxed, nothing far beyond it.
            audio_until = max((t for kind, t in events if kind == "audio"), default=0.0)
            assert frame.time - 0.05 <= audio_until <= frame.time + 0.001 or frame.index == 0
    kinds = [kind for kind, _ in events]
    first_video, last_video = kinds.index("video"), len(kinds) - 1 - kinds[::-1].index("video")
    assert kinds[first_video:last_video].count("audio") > 40  # audio between the video packets, not after


# ----------------------------------------------------------------------------------------------------------
# writing: failure and lifetime


def test_an_exception_inside_with_deletes_the_partial_file(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "partial.mp4"
    info, frames = read_all(clips["mp4"])
    with (
        pytest.raises(RuntimeError, match="network fell over"),
        VideoWriter(out, VideoEncoding("mp4"), like=info, audio_from=clips["audio_mp4"]) as writer,
    ):
        for frame in frames[:5]:
            writer.write(cutout_image(frame.index), frame)
        assert out.exists()
        raise RuntimeError("network fell over")
    assert not out.exists()


def test_closing_without_frames_leaves_no_file(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "empty.webm"
    info = read_all(clips["mp4"])[0]
    with pytest.raises(ValueError, match="no frames were written"), VideoWriter(out, VideoEncoding("webm"), like=info):
        pass
    assert not out.exists()


def test_a_closed_writer_refuses_frames(clips: dict[str, Path], tmp_path: Path) -> None:
    info, frames = read_all(clips["mp4"])
    writer = VideoWriter(tmp_path / "c.webm", VideoEncoding(), like=info)
    writer.write(cutout_image(0), frames[0])
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        writer.write(cutout_image(1), frames[1])
    assert writer.frames_written == 1


def test_frames_without_timestamps_use_their_time(clips: dict[str, Path], tmp_path: Path) -> None:
    info = read_all(clips["mp4"])[0]
    out = tmp_path / "t.mov"
    with VideoWriter(out, VideoEncoding("mov"), like=info) as writer:
        for index, time in enumerate([0.0, 0.04, 0.04, 0.2]):  # a repeated time is nudged by one tick
            writer.write(cutout_image(index), VideoFrame(cutout_image(index), None, time, index))
    frames = read_all(out)[1]
    assert [f.time for f in frames] == pytest.approx([0.0, 0.04, 0.04 + float(info.time_base), 0.2], abs=1e-4)


# ----------------------------------------------------------------------------------------------------------
# streaming memory

STREAMING_SCRIPT = """
import json, re, sys
from pathlib import Path
from bgone.imaging.video import VideoEncoding, VideoWriter, open_video

source, out, checkpoint = sys.argv[1], sys.argv[2], int(sys.argv[3])

def peak():
    # VmHWM, this address space's peak RSS in KiB. Not getrusage's ru_maxrss: Linux carries that across
    # exec, so a child of a big pytest process would start at its parent's peak.
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
seen = {}
with open_video(source) as reader:
    encoding = VideoEncoding("mp4", "low", "fast")
    with VideoWriter(out, encoding, like=reader.info, audio_from=reader) as writer:
        for frame in reader.frames():
            writer.write(frame.image.convert("RGBA"), frame)  # what the pipeline hands back
            if frame.index in (10, checkpoint):
                seen[frame.index] = peak()
        frames = frame.index + 1
print(json.dumps({"frames": frames, "warm": seen[10], "at_n": seen[checkpoint], "end": peak()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS (VmHWM) from Linux's /proc")
def test_memory_is_bounded_by_a_few_frames_not_the_clip(tmp_path: Path) -> None:
    """Decode and re-encode 150 frames of 1280x720 (with audio) in a fresh process: the peak RSS after N=50
    frames and after all 3N are the same within a few frames' worth. Holding frames would add 2.7 MB (RGB)
    to 3.7 MB (RGBA) for each of the 100 extra."""
    n = 50
    source = write_clip(
        tmp_path / "hd.mp4", size=(1280, 720), frames=3 * n, audio="aac", options={"preset": "ultrafast"}
    )
    result = subprocess.run(
        [sys.executable, "-c", STREAMING_SCRIPT, str(source), str(tmp_path / "out.mp4"), str(n - 1)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    assert stats["frames"] == 3 * n
    assert stats["warm"] < 400 * 1024, stats  # the whole process, PyAV and its codecs included
    growth_mib = (stats["end"] - stats["at_n"]) / 1024
    assert growth_mib < 24, f"peak RSS grew {growth_mib:.0f} MiB between frame {n} and {3 * n}: {stats}"
    assert open_video(tmp_path / "out.mp4").info.frame_count == 3 * n


# ----------------------------------------------------------------------------------------------------------
# fetch_to_file


class VideoHandler(BaseHTTPRequestHandler):
    body = b""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/clip.mp4":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/clip.mp4")
            self.end_headers()
        elif self.path == "/unsized":  # HTTP/1.0, no Content-Length: the size is known only as it streams
            self.send_response(200)
            self.end_headers()
            self.wfile.write(self.body)
        elif self.path == "/cut":  # promises more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body) * 2))
            self.end_headers()
            self.wfile.write(self.body)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


@pytest.fixture(scope="module")
def server(clips: dict[str, Path]) -> Iterator[str]:
    VideoHandler.body = clips["audio_mp4"].read_bytes()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), VideoHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_fetch_to_file_streams_the_body_to_the_path(server: str, tmp_path: Path) -> None:
    target = tmp_path / "in.mp4"
    got = fetch_to_file(f"{server}/redirect", target, max_bytes=10**7, allow_private=True)
    assert got == target
    assert target.read_bytes() == VideoHandler.body
    assert read_all(target)[0].frame_count == 10
    assert list(tmp_path.iterdir()) == [target]  # no .part left over


@pytest.mark.parametrize("path", ["/clip.mp4", "/unsized"])
def test_fetch_to_file_over_the_limit_leaves_no_file(server: str, tmp_path: Path, path: str) -> None:
    target = tmp_path / "in.mp4"
    with pytest.raises(FileDownloadError, match="over the limit of 1,000 bytes"):
        fetch_to_file(f"{server}{path}", target, max_bytes=1000, allow_private=True)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/missing.mp4", "/cut"])
def test_fetch_to_file_failures_leave_no_file(server: str, tmp_path: Path, path: str) -> None:
    target = tmp_path / "in.mp4"
    with pytest.raises(FileDownloadError):
        fetch_to_file(f"{server}{path}", target, max_bytes=10**7, allow_private=True, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_fetch_to_file_keeps_the_address_policy(server: str, tmp_path: Path) -> None:
    target = tmp_path / "in.mp4"
    with pytest.raises(FileDownloadError, match="loopback"):
        fetch_to_file(f"{server}/clip.mp4", target, max_bytes=10**7)
    assert list(tmp_path.iterdir()) == []
    fetch_to_file(f"{server}/clip.mp4", target, max_bytes=10**7, allowed_hosts=["127.0.0.1"])
    assert target.stat().st_size == len(VideoHandler.body)
