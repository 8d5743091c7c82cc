"""Synthetic video clips for the video tests, made with PyAV itself: moving coloured shapes over a gradient,
optionally a sine tone, irregular (VFR) timestamps, rotation metadata, odd sizes, and broken copies.

Every frame's content is a pure function of its index, so a test can compare what it reads back with what
was written (lossy codecs: within a tolerance)."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

DEFAULT_SIZE = (64, 48)


def clip_array(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Frame ``index`` as an (h, w, 3) uint8 array: a red/green gradient, a blue square moving right and a
    yellow disc moving down (both wrap around)."""
    width, height = size
    rgb = _gradient(width, height).copy()
    side = max(4, min(width, height) // 4)
    x0 = (index * 3) % max(width - side, 1)
    rgb[height // 8 : height // 8 + side, x0 : x0 + side] = (20, 40, 230)
    radius = side // 2 + 1
    cx, cy = width * 2 // 3, (height // 3 + index * 2) % height
    top, left = max(cy - radius, 0), max(cx - radius, 0)
    ys, xs = np.ogrid[top : min(cy + radius + 1, height), left : min(cx + radius + 1, width)]
    rgb[top : top + ys.shape[0], left : left + xs.shape[1]][(xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2] = (
        240,
        220,
        30,
    )
    return rgb


@functools.lru_cache(maxsize=8)
def _gradient(width: int, height: int) -> np.ndarray:
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = (np.arange(width) * 200 // max(width - 1, 1)).astype(np.uint8)[None, :]
    rgb[..., 1] = (np.arange(height) * 200 // max(height - 1, 1)).astype(np.uint8)[:, None]
    rgb[..., 2] = 40
    rgb.flags.writeable = False
    return rgb


def clip_image(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    return Image.fromarray(clip_array(index, size), "RGB")


def alpha_array(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """A cut-out's alpha for frame ``index``: a moving opaque rectangle, a soft horizontal ramp along the
    bottom rows, transparent elsewhere. Large flat areas so lossy codecs keep it within a few levels."""
    width, height = size
    alpha = np.zeros((height, width), np.uint8)
    x0 = (index * 2) % max(width // 2, 1)
    alpha[height // 4 : height * 3 // 4, x0 : x0 + width // 2] = 255
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    alpha[height - max(height // 6, 2) :, :] = ramp
    return alpha


def cutout_image(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """An "RGBA" cut-out, what the pipeline hands the writer: the clip's frame with :func:`alpha_array`."""
    rgba = np.dstack([clip_array(index, size), alpha_array(index, size)])
    return Image.fromarray(rgba, "RGBA")


def mask_image(index: int, size: tuple[int, int] = DEFAULT_SIZE) -> Image.Image:
    """An "L" mask, what the pipeline hands a mask writer."""
    return Image.fromarray(alpha_array(index, size), "L")


def write_clip(
    path: str | Path,
    *,
    size: tuple[int, int] = DEFAULT_SIZE,
    frames: int = 10,
    rate: int = 25,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    container_format: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    rotation: int = 0,
    last_duration: int | None = None,
    audio: str | None = None,
    audio_rate: int = 48_000,
    audio_layout: str = "stereo",
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """Write a clip of ``frames`` frames of :func:`clip_array` (or ``len(pts)`` frames at ``pts`` in
    ``time_base``, for VFR) and return its path.

    ``rotation``: degrees clockwise a player turns the stored frames (written as the display matrix).
    ``last_duration``: how long the last frame lasts, in ``time_base`` (default: one frame at ``rate``).
    ``audio``: an audio encoder name ("aac", "libopus", "pcm_s16le", ...) for a 440 Hz tone as long as the
    video, interleaved with it; None for no audio track.
    """
    path = Path(path)
    if pts is not None:
        frames = len(pts)
    time_base = time_base or Fraction(1, rate)
    with av.open(str(path), "w", format=container_format, container_options=container_options or {}) as out:
        video = out.add_stream(codec, rate=rate, options=options or {})
        video.width, video.height = size
        if pix_fmt is not None:
            video.pix_fmt = pix_fmt
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(-rotation)  # PyAV takes counter-clockwise degrees
        tone = None
        if audio is not None:
            tone = out.add_stream(audio, rate=audio_rate, layout=audio_layout)
            if audio == "vorbis":
                tone.codec_context.options = {"strict": "experimental"}
        stamps = list(pts) if pts is not None else [round(i / rate / time_base) for i in range(frames)]
        # Encoders leave packet durations unset; a clip whose last frame has none gets a guessed duration.
        ends = [*stamps[1:], stamps[-1] + (last_duration or round(1 / rate / time_base))]
        durations = {start: end - start for start, end in zip(stamps, ends, strict=True)}

        def mux_video(packets: list[av.Packet]) -> None:
            for packet in packets:
                packet.duration = durations[packet.pts]
            out.mux(packets)

        sample = 0
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(clip_array(index, size), format="rgb24")
            frame.pts = stamps[index]
            frame.time_base = time_base
            mux_video(video.encode(frame))
            if tone is not None:  # audio up to this frame's end: interleaved, as a camera would write it
                until = round((float(frame.pts * time_base) + 1 / rate) * audio_rate)
                sample = _write_tone(out, tone, sample, until, audio_rate, audio_layout)
        mux_video(video.encode())
        if tone is not None:
            out.mux(tone.encode())
    return path


def _write_tone(out: av.container.OutputContainer, stream, start: int, stop: int, rate: int, layout: str) -> int:
    chunk = 1024
    channels = 2 if layout == "stereo" else 1
    while start < stop:
        n = min(chunk, stop - start)
        t = (np.arange(start, start + n) / rate).astype(np.float32)
        wave = (0.3 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)
        samples = np.repeat(wave[None, :], channels, axis=0)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        out.mux(stream.encode(frame))
        start += n
    return start


def truncated_copy(source: Path, target: Path, fraction: float) -> Path:
    """The first ``fraction`` of ``source``'s bytes, as an interrupted download leaves it."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def corrupted_copy(source: Path, target: Path, *, start: float = 0.5, length: int = 4000, seed: int = 0) -> Path:
    """``source`` with ``length`` random bytes written over it from ``start`` (a fraction of its size)."""
    data = bytearray(source.read_bytes())
    offset = int(len(data) * start)
    noise = np.random.default_rng(seed).integers(0, 256, size=length, dtype=np.uint8).tobytes()
    data[offset : offset + length] = noise[: len(data) - offset]
    target.write_bytes(bytes(data))
    return target
