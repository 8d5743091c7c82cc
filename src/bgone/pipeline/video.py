"""Videos: decoded frames → the network in batches → refined cut-outs → an encoded video (and a mask video).

Streaming from end to end: frames are read, run and written a batch at a time, so memory stays bounded
by a few batches whatever the clip's length. Each frame is an image to the :class:`Remover` (same model
cache, dtype, fast paths, ONNX backend and refinement as for images); frames of one clip share a forward
pass, ``remover.batch_size`` at a time. A rotated clip is turned upright for the network and its results
turned back, so the output keeps the input's rotation metadata, timestamps (variable frame rate too),
frame count and audio (see :mod:`bgone.imaging.video`).

Nothing half-written survives: the outputs are written next to their targets under a temporary name and
renamed only when complete. ``should_stop`` is asked before every batch (a cancelled request stops within
one batch) and ``progress`` hears after every batch. Frames are processed independently: no temporal
smoothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from bgone.errors import InputError, RequestCancelledError, VideoLoadError, VideoTooLargeError
from bgone.imaging.colors import parse_color
from bgone.imaging.frames import DecodedImage
from bgone.imaging.video import (
    VIDEO_FORMATS,
    VideoEncoding,
    VideoFrame,
    VideoInfo,
    VideoReader,
    VideoWriter,
    open_video,
)
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.remover import DEFAULT_MODEL, Remover
from bgone.settings import DEFAULT_VIDEO_LIMITS, VideoLimits

VideoSource = str | os.PathLike[str] | BinaryIO  # a path, or a binary file object


@dataclass(frozen=True)
class VideoProgress:
    """Frames done of the total (the total is the container's count, or an estimate from its duration)."""

    done: int
    total: int
    seconds: float  # since the first frame was read

    @property
    def frames_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        rate = self.frames_per_second
        return max(0.0, (self.total - self.done) / rate) if rate > 0 and self.total >= self.done else None

    def __str__(self) -> str:
        eta = f", about {self.eta_seconds:.0f} s left" if self.eta_seconds is not None else ""
        return f"{self.done}/{self.total} frames ({self.frames_per_second:.1f} fps{eta})"


@dataclass(frozen=True)
class VideoResult:
    """What was written: the cut-out video, the mask video (when asked for) and the input's facts."""

    path: Path
    mask_path: Path | None
    frames: int
    info: VideoInfo
    seconds: float
    encoding: VideoEncoding
    name: str | None = None  # the input's file stem, for naming outputs


def remove_video(
    remover: Remover,
    source: VideoSource,
    output: str | os.PathLike[str],
    *,
    options: RemovalOptions | None = None,
    encoding: VideoEncoding | None = None,
    mask_output: str | os.PathLike[str] | None = None,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    progress: Callable[[VideoProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> VideoResult:
    """Remove the background of every frame of ``source`` (a path or a binary file object); write the
    cut-out to ``output`` (and the mask to ``mask_output``) as ``encoding`` says (default: WebM with alpha).

    ``options`` apply per frame as for images (resolution, refinement, ``mask_only``, a ``background``
    colour or image that replaces transparency in every format); ``crop`` is refused (frames of one video
    keep one size). Raises :class:`~bgone.errors.VideoLoadError` / :class:`~bgone.errors.VideoTooLargeError`
    for inputs it cannot take and :class:`~bgone.errors.RequestCancelledError` when ``should_stop()`` says so."""
    encoding = encoding or VideoEncoding()
    started = time.perf_counter()
    output, mask_target = Path(output), Path(mask_output) if mask_output is not None else None
    with _opened(source, limits) as reader, contextlib.ExitStack() as stack:
        info = reader.info
        writer = stack.enter_context(_atomic_writer(output, encoding, info, audio_from=reader, mask=False))
        mask_writer = (
            stack.enter_context(_atomic_writer(mask_target, encoding, info, audio_from=None, mask=True))
            if mask_target is not None
            else None
        )
        done = 0
        for batch in _process(remover, reader, options or remover.options, should_stop):
            for frame, cutout, mask in batch:
                writer.write(cutout, frame)
                if mask_writer is not None:
                    mask_writer.write(mask, frame)
            done += len(batch)
            if progress is not None:
                progress(VideoProgress(done, max(done, info.frame_count), time.perf_counter() - started))
    name = Path(os.fspath(source)).stem if isinstance(source, str | os.PathLike) else None
    return VideoResult(output, mask_target, done, info, time.perf_counter() - started, encoding, name)


def video_frames(
    remover: Remover,
    source: VideoSource,
    *,
    options: RemovalOptions | None = None,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
) -> Iterator[tuple[VideoFrame, Image.Image, Image.Image]]:
    """Every frame of ``source`` with its cut-out and mask (both in the frame's stored orientation), one at a
    time as the batches are run: for callers that want frames rather than a file."""
    with _opened(source, limits) as reader:
        for batch in _process(remover, reader, options or remover.options, None):
            yield from batch



@contextlib.contextmanager
def _opened(source: VideoSource, limits: VideoLimits) -> Iterator[VideoReader]:
    """The video at a path, or in a binary file object (spooled to a temporary file, under the byte limit)."""
    if isinstance(source, str | os.PathLike):
        with open_video(source, limits=limits) as reader:
            yield reader
        return
    with tempfile.TemporaryDirectory(prefix="bgone-video-") as folder:
        path = Path(folder) / (Path(str(getattr(source, "name", "") or "input")).name or "input")
        written = 0
        with path.open("wb") as spool:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > limits.max_bytes:
                    raise VideoTooLargeError(f"the video is over the limit of {limits.max_bytes:,} bytes")
                spool.write(chunk)
        with open_video(path, limits=limits) as reader:
            yield reader


def _process(
    remover: Remover, reader: VideoReader, options: RemovalOptions, should_stop: Callable[[], bool] | None
) -> Iterator[list[tuple[VideoFrame, Image.Image, Image.Image]]]:
    if options.crop:
        raise InputError("crop applies to images only: the frames of a video keep one size")
    empty = True
    for batch in _batches(reader.frames(), max(1, remover.batch_size)):
        if should_stop is not None and should_stop():
            raise RequestCancelledError("Request cancelled")
        empty = False
        yield list(_run_batch(remover, batch, options, reader.info.rotation))
    if empty:
        raise VideoLoadError("the video has no frames")


@contextlib.contextmanager
def _atomic_writer(
    target: Path, encoding: VideoEncoding, info: VideoInfo, *, audio_from: object, mask: bool
) -> Iterator[VideoWriter]:
    """A writer on a temporary name beside ``target``, renamed to it only when the video is complete."""
    partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")
    try:
        with VideoWriter(partial, encoding, like=info, audio_from=audio_from, mask=mask) as writer:  # type: ignore[arg-type]
            yield writer
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _batches(frames: Iterator[VideoFrame], size: int) -> Iterator[list[VideoFrame]]:
    batch: list[VideoFrame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_batch(
    remover: Remover, batch: list[VideoFrame], options: RemovalOptions, rotation: int
) -> Iterator[tuple[VideoFrame, Image.Image, Image.Image]]:
    """(frame, cut-out, mask) for each frame, in the frames' stored orientation."""
    upright = [DecodedImage(frames=[_turn(frame.image, rotation)]) for frame in batch]
    masks, sizes = remover.predict(upright, options.operating_resolution)
    for frame, image, image_masks, size in zip(batch, upright, masks, sizes, strict=True):
        result = remover.finish(image, image_masks, options, size)
        # Opaque RGB (a background was composited) or a grey mask (mask_only): still RGBA to the writer.
        cutout = result.frames[0] if result.frames[0].mode == "RGBA" else result.frames[0].convert("RGBA")
        yield frame, _turn(cutout, -rotation), _turn(result.masks[0], -rotation)


def _turn(image: Image.Image, clockwise: int) -> Image.Image:
    """``image`` turned ``clockwise`` degrees (a multiple of 90; PIL's rotate turns counter-clockwise)."""
    return image.rotate(-clockwise, expand=True) if clockwise % 360 else image


def remove_video_background(
    source: VideoSource,
    output: str | os.PathLike[str],
    *,
    model: str | os.PathLike[str] = DEFAULT_MODEL,
    device: str | None = None,
    dtype: str | None = "auto",
    batch_size: int = 4,
    mask_output: str | os.PathLike[str] | None = None,
    quality: str = "high",
    write_mode: str = "balanced",
    background: tuple[int, int, int] | str = (0, 0, 0),
    progress: Callable[[VideoProgress], None] | None = None,
    **options: object,
) -> VideoResult:
    """Remove the background of a video (a path or a binary file object) and write ``output``; its
    extension picks the format: ``.webm`` (VP9 with alpha), ``.mov`` (ProRes 4444 with alpha), ``.gif``
    (binary transparency) or ``.mp4`` (H.264, transparent pixels become ``background``).

    ``options`` are :class:`RemovalOptions` fields (``operating_resolution``, ``refine_foreground``, ...);
    ``batch_size`` frames share each forward pass. The model stays loaded for the next call."""
    fmt = Path(output).suffix.lower().lstrip(".")
    if fmt not in VIDEO_FORMATS:
        raise InputError(f"unsupported video output {Path(output).name!r}: use a .webm, .mov, .mp4 or .gif file name")
    color = parse_color(background) if isinstance(background, str) else background
    encoding = VideoEncoding(format=fmt, quality=quality, write_mode=write_mode, background=tuple(color[:3]))  # type: ignore[arg-type]
    remover = Remover(model, device=device, dtype=dtype, batch_size=batch_size)
    return remove_video(
        remover,
        source,
        output,
        options=RemovalOptions(**options),  # type: ignore[arg-type]
        encoding=encoding,
        mask_output=mask_output,
        progress=progress,
    )
