"""Video in and out: streaming decode and encode with PyAV (FFmpeg), one frame at a time.

The room's contract:

* :func:`open_video` opens a local file, checks :class:`~bgone.settings.VideoLimits` from the headers before
  any frame is decoded (file bytes, duration, frames, pixels per frame: :class:`VideoTooLargeError` naming
  the limit and the value), and decodes the first frame to learn the rotation and to prove the codec is
  decodable. Anything FFmpeg cannot read (unknown container, no video stream, a codec without a decoder,
  a truncated or corrupt file, also when it breaks while :meth:`VideoReader.frames` runs) is a
  :class:`VideoLoadError` with a one-line reason; no PyAV exception leaves this module.
* :meth:`VideoReader.frames` yields :class:`VideoFrame` s in presentation order, each "RGB" as stored
  (not rotated; ``info.rotation`` says how to show it) with its own pts, so variable frame rates survive.
  ``alpha=True`` yields "RGBA" and decodes VP8/VP9 *with alpha* with libvpx: FFmpeg's native ``vp9``
  decoder silently drops the alpha plane that WebM carries beside the colour.
* :class:`VideoWriter` encodes "RGBA" cut-outs (or "L" masks with ``mask=True``) as mp4, webm, mov or gif,
  keeping each frame's pts, the rotation (as the stream's display matrix), and the source's audio,
  interleaved as frames are written so memory stays a few frames whatever the clip's length.

What it does not know: models, requests, URLs (:func:`bgone.imaging.fetch.fetch_to_file` downloads them),
where the files live, or which frames the pipeline batches. Mirrored display matrices (hflip/vflip) are
read as their rotation only; rotations that are not a multiple of 90 degrees snap to the nearest one.
``info.frame_count`` is the container's count where it has one (MP4/MOV; it includes frames an edit list
hides) and an estimate from duration and rate elsewhere (Matroska/WebM, AVI without one, GIF): use it for
progress, not for loops. FFmpeg conceals some damage inside frames; what it does not report is not seen
here. A cut file is recognised by a decode error, or by frames ending well before the duration the header
declares (and, where the container counts frames, fewer of them than it counts).

Output formats and what each keeps:

======  ==========================================  ===================================  =============================
format  video                                       alpha                                audio
======  ==========================================  ===================================  =============================
mp4     H.264 (libx264) ``yuv420p``, +faststart     none: composited over `background`   AAC (AAC/MP3 copied)
webm    VP9 (libvpx-vp9) ``yuva420p``               8-bit alpha plane (BlockAdditional)  Opus (Opus/Vorbis copied)
mov     ProRes 4444 (prores_ks) ``yuva444p10le``    10-bit alpha                         AAC (AAC/MP3/ALAC/PCM copied)
gif     a palette per frame, loops forever          binary: alpha < 128 is transparent   none
======  ==========================================  ===================================  =============================

Mask videos (``mask=True``, "L" frames) are grey: mp4/webm ``yuv420p``, mov ProRes 4444 ``yuv444p10le``,
gif a grey palette. Colour is converted with BT.709 (limited range) and the streams are tagged so.

Quality and write mode → encoder settings:

=======  =========  =======  ===================================  ===========
quality  H.264 crf  VP9 crf  ProRes 4444 (profile 4444 always)    GIF colours
=======  =========  =======  ===================================  ===========
low      28         42       qscale 16                            32
medium   23         36       qscale 8                             96
high     18         30       the profile's own rate control       192
maximum  12         20       qscale 1                             255
=======  =========  =======  ===================================  ===========

==========  ============  =============================  ===========================
write_mode  H.264 preset  VP9 deadline, cpu-used         GIF palette
==========  ============  =============================  ===========================
fast        veryfast      realtime, 8                    octree, no dithering
balanced    medium        good, 4                        median cut, Floyd-Steinberg
small       slow          good, 1                        median cut, no dithering
==========  ============  =============================  ===========================

VP9 runs in constant-quality mode (``b=0``, ``row-mt=1``). ProRes is intra-only: ``write_mode`` changes
nothing there.

Sizes: H.264 4:2:0 needs even dimensions, so an odd width or height is **padded** by one pixel on the
right/bottom, repeating the edge pixels (nothing is cropped; ``VideoWriter.size`` is the encoded size).
VP9, ProRes and GIF keep odd sizes. GIF has no rotation metadata, so its frames are turned upright before
they are written (``size`` is then the display size); the other formats store frames as they came and
carry the rotation.

Timing: every format keeps the source's time base where the container allows (Matroska/WebM store
milliseconds, GIF hundredths of a second). The writer encodes each frame when the next one arrives, so
it knows the frame's duration (encoders leave packet durations unset); the last frame lasts until the
source's declared end. MP4 sums sample durations from decode times, which B-frame reordering shifts in a
variable-frame-rate clip: there the container's duration can differ from the source's by a frame gap,
while every frame's pts is exact.

Imports nothing of bgone but :mod:`bgone.errors` and :mod:`bgone.settings`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image

from bgone.errors import BgoneError, VideoLoadError, VideoTooLargeError
from bgone.imaging.video_formats import (
    MIME_TYPES,
    QUALITIES,
    VIDEO_EXTENSIONS,
    VIDEO_FORMATS,
    WRITE_MODES,
    VideoEncoding,
    is_video_name,
)
from bgone.settings import DEFAULT_VIDEO_LIMITS, VideoLimits

__all__ = [
    "MIME_TYPES",
    "QUALITIES",
    "VIDEO_EXTENSIONS",
    "VIDEO_FORMATS",
    "WRITE_MODES",
    "VideoEncoding",
    "VideoFrame",
    "VideoInfo",
    "VideoReader",
    "VideoWriter",
    "is_video_name",
    "open_video",
]


_H264_CRF = {"low": 28, "medium": 23, "high": 18, "maximum": 12}
_H264_PRESET = {"fast": "veryfast", "balanced": "medium", "small": "slow"}
_VP9_CRF = {"low": 42, "medium": 36, "high": 30, "maximum": 20}
_VP9_SPEED = {"fast": ("realtime", 8), "balanced": ("good", 4), "small": ("good", 1)}
_PRORES_QSCALE: dict[str, int | None] = {"low": 16, "medium": 8, "high": None, "maximum": 1}
_GIF_COLORS = {"low": 32, "medium": 96, "high": 192, "maximum": 255}
_GIF_PALETTE = {
    "fast": (Image.Quantize.FASTOCTREE, Image.Dither.NONE),
    "balanced": (Image.Quantize.MEDIANCUT, Image.Dither.FLOYDSTEINBERG),
    "small": (Image.Quantize.MEDIANCUT, Image.Dither.NONE),
}
_GIF_TIME_BASE = Fraction(1, 100)  # GIF frame delays are hundredths of a second
_GIF_TRANSPARENT = 255  # the palette index left for transparent pixels
_ALPHA_THRESHOLD = 128  # GIF transparency is binary: alpha below this is transparent (as encode_image does)
_QP2LAMBDA = 118  # FFmpeg's FF_QP2LAMBDA: global_quality is a quantiser times this

# Audio a container takes as it is; anything else is re-encoded with _AUDIO_ENCODERS.
_AUDIO_COPY = {
    "mp4": frozenset({"aac", "mp3"}),
    "webm": frozenset({"opus", "vorbis"}),
    "mov": frozenset({"aac", "mp3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_f32le"}),
}
_AUDIO_ENCODERS = {"mp4": "aac", "webm": "libopus", "mov": "aac"}
_AAC_RATES = frozenset({8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000})

# The libvpx decoders read the alpha plane that Matroska carries as BlockAdditional side data.
_ALPHA_DECODERS = {"vp9": "libvpx-vp9", "vp8": "libvpx"}


# ----------------------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class VideoInfo:
    """What the headers (and the first frame) say about a video's main video stream."""

    width: int  # as stored, before rotation
    height: int
    rotation: int  # degrees clockwise to turn a stored frame to display it upright: 0, 90, 180, 270
    frame_count: int  # exact when the container says, else estimated from duration and rate (>= 1)
    duration: float  # seconds
    average_rate: Fraction | None  # frames per second, None when unknown
    time_base: Fraction
    codec: str  # FFmpeg's codec name: "h264", "vp9", "prores", ...
    container: str  # FFmpeg's demuxer name: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...
    has_audio: bool

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows it, after rotation."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


@dataclass
class VideoFrame:
    image: Image.Image  # "RGB" ("RGBA" from a reader opened with alpha=True), as stored (not rotated)
    pts: int | None  # in info.time_base; None when the file has no timestamp for it
    time: float  # seconds
    index: int  # 0, 1, 2, ... in presentation order


def open_video(
    path: str | os.PathLike[str], *, limits: VideoLimits = DEFAULT_VIDEO_LIMITS, alpha: bool = False
) -> VideoReader:
    """Open a local video file for streaming decode (see :class:`VideoReader`)."""
    return VideoReader(path, limits=limits, alpha=alpha)


class VideoReader:
    """A video file opened for decoding; a context manager (``close()`` releases the container).

    ``info`` is known once it is open. :meth:`frames` streams the frames; calling it again starts over from
    the first frame. ``alpha=True``: frames are "RGBA" (opaque where the codec has no alpha), and VP8/VP9
    with an alpha channel are decoded by libvpx, which keeps it."""

    def __init__(
        self, path: str | os.PathLike[str], *, limits: VideoLimits = DEFAULT_VIDEO_LIMITS, alpha: bool = False
    ) -> None:
        self.path = Path(path)
        self.limits = limits
        self.alpha = alpha
        self._name = _short(self.path.name or str(self.path))
        self._check_file()
        self._container: Any = None
        self._pending: Iterator[Any] | None = None  # decoded frames ready for the next frames() call
        self._container = self._open()
        try:
            self.info = self._probe()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------------------------
    def _check_file(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise VideoLoadError(f"no such file: {self._name}") from None
        except OSError as exc:
            raise VideoLoadError(f"cannot read {self._name}: {exc.strerror or exc}") from None
        if not self.path.is_file():
            raise VideoLoadError(f"not a file: {self._name}")
        if stat.st_size == 0:
            raise VideoLoadError(f"{self._name} is empty (0 bytes): upload the video file again")
        if stat.st_size > self.limits.max_bytes:
            raise VideoTooLargeError(
                f"{self._name} is {stat.st_size:,} bytes, over the limit of {self.limits.max_bytes:,} bytes "
                "(max_bytes): send a shorter or more compressed video"
            )

    def _open(self) -> Any:
        try:
            return av.open(str(self.path), "r", metadata_errors="replace")
        except av.FFmpegError as exc:
            raise VideoLoadError(
                f"{self._name} is not a video FFmpeg can read ({_reason(exc)}): send an MP4, MOV, WebM, MKV or AVI file"
            ) from None

    def _video_stream(self, container: Any) -> Any:
        # Cover art in MP4/MKV is a one-picture "video" stream marked attached_pic: not the video.
        streams = [s for s in container.streams.video if not (s.disposition & av.stream.Disposition.attached_pic)]
        if not streams:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "nothing"
            raise VideoLoadError(
                f"{self._name} has no video stream (it has {kinds}): send a video file (a file cut short can "
                "look like this too: upload it again)"
            )
        return streams[0]

    def _probe(self) -> VideoInfo:
        container = self._container
        stream = self._video_stream(container)
        self._stream_index = stream.index
        if stream.codec_context is None:
            raise VideoLoadError(
                f"{self._name} uses a video codec this FFmpeg build cannot decode: re-encode it as H.264, VP9 or ProRes"
            )
        codec = stream.codec_context.name
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise VideoLoadError(f"{self._name} has no frame size in its headers: the file is truncated or corrupt")
        limits = self.limits
        if width * height > limits.max_pixels:
            raise VideoTooLargeError(
                f"{self._name} is {width}x{height} ({width * height:,} pixels per frame), over the limit of "
                f"{limits.max_pixels:,} pixels (max_pixels): scale it down"
            )
        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90_000)
        rate = stream.average_rate or stream.guessed_rate
        rate = Fraction(rate) if rate and 0 < rate <= 1000 else None
        self._stream_duration = _stream_duration(stream, time_base)
        duration = self._stream_duration
        if duration is None and container.duration:
            duration = container.duration / av.time_base
        if duration is None and stream.frames and rate:
            duration = float(stream.frames / rate)
        duration = float(duration or 0.0)
        if duration > limits.max_seconds:
            raise VideoTooLargeError(
                f"{self._name} is {duration:,.1f} s long, over the limit of {limits.max_seconds:g} s "
                "(max_seconds): trim it"
            )
        frame_count = stream.frames if stream.frames > 0 else max(1, round(duration * rate)) if rate else 1
        if frame_count > limits.max_frames:
            raise VideoTooLargeError(
                f"{self._name} has {frame_count:,} frames, over the limit of {limits.max_frames:,} frames "
                "(max_frames): trim it or lower its frame rate"
            )
        self._rate = rate
        self._time_base = time_base
        self._exact_count = stream.frames > 0
        has_audio = any(True for _ in container.streams.audio)

        # The rotation travels as the stream's display matrix, which FFmpeg hands out only on decoded frames;
        # decoding the first frame also proves the codec can be decoded before anyone waits for it.
        frames = self._decode(container, stream, libvpx=None)
        first = next(frames, None)
        if first is None:
            raise VideoLoadError(f"{self._name} has no decodable video frames: the file is truncated or corrupt")
        rotation = _rotation(first, stream)
        self._alpha_decoder = _ALPHA_DECODERS.get(codec) if self.alpha and _has_alpha_mode(stream) else None
        if self._alpha_decoder is None:
            self._pending = itertools.chain([first], frames)
        return VideoInfo(
            width=width,
            height=height,
            rotation=rotation,
            frame_count=int(frame_count),
            duration=duration,
            average_rate=rate,
            time_base=time_base,
            codec=codec,
            container=container.format.name,
            has_audio=has_audio,
        )

    def _decode(self, container: Any, stream: Any, libvpx: str | None) -> Iterator[Any]:
        """Decoded av frames of ``stream``; every FFmpeg error becomes a VideoLoadError."""
        try:
            if libvpx is None:
                stream.thread_type = "AUTO"
                yield from container.decode(stream)
                return
            decoder = av.CodecContext.create(libvpx, "r")
            decoder.width, decoder.height = stream.codec_context.width, stream.codec_context.height
            decoder.thread_count = min(os.cpu_count() or 1, 8)
            for packet in container.demux(stream):
                # The demuxer ends with an empty packet per stream; to a decoder that means "flush".
                yield from decoder.decode(packet if packet.size else None)
        except av.FFmpegError as exc:
            raise VideoLoadError(f"{self._name} is truncated or corrupt ({_reason(exc)}): upload it again") from None

    # -- frames --------------------------------------------------------------------------------------------
    def frames(self) -> Iterator[VideoFrame]:
        """The frames in presentation order, one at a time (memory: the decoder's few frames).

        Raises :class:`VideoLoadError` when the data breaks off (a decode error, or the stream ending well
        before the duration its header declares) and :class:`VideoTooLargeError` when the frames go past
        ``max_frames`` or ``max_seconds`` although the headers said otherwise."""
        if self._container is None:
            raise ValueError(f"{self._name} is closed: open it again to read its frames")
        source = self._pending
        self._pending = None
        if source is None:  # a second pass, or alpha through libvpx: start over from the first packet
            self._container.close()
            self._container = self._open()
            stream = self._container.streams[self._stream_index]
            source = self._decode(self._container, stream, libvpx=self._alpha_decoder)
        return self._frames(source)

    def _frames(self, source: Iterator[Any]) -> Iterator[VideoFrame]:
        info, limits = self.info, self.limits
        interval = float(1 / self._rate) if self._rate else 0.04
        first_time: float | None = None
        time = 0.0
        index = 0
        for frame in source:
            if index >= limits.max_frames:
                raise VideoTooLargeError(
                    f"{self._name} has more than {limits.max_frames:,} frames (max_frames), more than its header "
                    "declared: trim it or lower its frame rate"
                )
            pts = frame.pts
            time = float(pts * self._time_base) if pts is not None else (time + interval if index else 0.0)
            if first_time is None:
                first_time = time
            if time - first_time > limits.max_seconds:
                raise VideoTooLargeError(
                    f"{self._name} runs past {limits.max_seconds:g} s (max_seconds), longer than its header "
                    "declared: trim it"
                )
            try:
                image = self._image(frame, info)
            except (av.FFmpegError, ValueError) as exc:  # a pixel format swscale cannot convert
                raise VideoLoadError(f"{self._name}: cannot convert frame {index} to RGB ({_reason(exc)})") from None
            yield VideoFrame(image, pts, time, index)
            index += 1
        # Demuxers often end quietly at a cut (Matroska/WebM always, MP4 when the index is intact and the
        # frames are small); the duration the header declares gives it away. Where the container also counts
        # its frames, both must fall short: an edit list hides frames but shortens the duration with them,
        # and a long last frame (a still screen recording) shortens the span but not the count.
        declared = self._stream_duration
        if declared and first_time is not None:
            span = time - first_time + interval
            short = span < declared - max(0.5, 0.1 * declared, 2 * interval)
            if short and (not self._exact_count or index < info.frame_count):
                raise VideoLoadError(
                    f"{self._name} is truncated or corrupt: its header declares {declared:.2f} s of video, "
                    f"the data ends after {span:.2f} s ({index} frames): upload the complete file"
                )

    def _image(self, frame: Any, info: VideoInfo) -> Image.Image:
        if (frame.width, frame.height) != (info.width, info.height):
            # A mid-stream resolution change: keep every frame the size the headers promised.
            frame = frame.reformat(width=info.width, height=info.height)
        if self.alpha:
            return Image.fromarray(frame.to_ndarray(format="rgba"), "RGBA")
        return frame.to_image()

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._pending = None
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r})"


def _stream_duration(stream: Any, time_base: Fraction) -> float | None:
    """The video stream's own duration: the stream header (MP4/MOV), or Matroska's per-track DURATION tag."""
    if stream.duration:
        return float(stream.duration * time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    match = re.fullmatch(r"(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)", (tag or "").strip())
    if match:
        hours, minutes, seconds = match.groups()
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return None


def _rotation(frame: Any, stream: Any) -> int:
    """Clockwise degrees to display ``frame`` upright: its display matrix, else the old ``rotate`` tag."""
    # PyAV's VideoFrame.rotation is FFmpeg's av_display_rotation_get: counter-clockwise, in [-180, 180].
    counter_clockwise = frame.rotation
    if counter_clockwise:
        return round(-counter_clockwise / 90) * 90 % 360
    tag = stream.metadata.get("rotate", "")
    try:
        return round(float(tag) / 90) * 90 % 360  # the tag is clockwise already (iPhone: "90")
    except ValueError:
        return 0


def _has_alpha_mode(stream: Any) -> bool:
    # FFmpeg's Matroska demuxer reports a track's AlphaMode element as this tag.
    return str(stream.metadata.get("alpha_mode", stream.metadata.get("ALPHA_MODE", ""))).strip() == "1"


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0].rstrip(".")


def _short(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


# ----------------------------------------------------------------------------------------------------------
# writing


@dataclass(frozen=True)
class _Codec:
    container_format: str
    codec: str
    pix_fmt: str
    options: dict[str, str]
    container_options: dict[str, str]


def _codec_for(encoding: VideoEncoding, mask: bool) -> _Codec:
    quality, mode = encoding.quality, encoding.write_mode
    if encoding.format == "mp4":
        options = {"crf": str(_H264_CRF[quality]), "preset": _H264_PRESET[mode]}
        # +faststart moves the index (moov) before the data when the file is closed, so browsers can start
        # playing before the whole file has arrived.
        return _Codec("mp4", "libx264", "yuv420p", options, {"movflags": "+faststart"})
    if encoding.format == "webm":
        deadline, cpu_used = _VP9_SPEED[mode]
        options = {
            "crf": str(_VP9_CRF[quality]),
            "b": "0",  # constant quality: crf alone, no bitrate target
            "deadline": deadline,
            "cpu-used": str(cpu_used),
            "row-mt": "1",
            "threads": str(min(os.cpu_count() or 1, 8)),
        }
        return _Codec("webm", "libvpx-vp9", "yuv420p" if mask else "yuva420p", options, {})
    if encoding.format == "mov":
        options = {"profile": "4444", "vendor": "apl0"}
        qscale = _PRORES_QSCALE[quality]
        if qscale is not None:
            # prores_ks takes a fixed quantiser the way ffmpeg's -q:v passes it: a flag and global_quality.
            options |= {"flags": "+qscale", "global_quality": str(qscale * _QP2LAMBDA)}
        return _Codec("mov", "prores_ks", "yuv444p10le" if mask else "yuva444p10le", options, {})
    return _Codec("gif", "gif", "gray" if mask else "pal8", {}, {"loop": "0"})  # loop 0: forever


class VideoWriter:
    """Encode frames into ``path`` as ``encoding.format``; a context manager.

    ``like`` is the source's :class:`VideoInfo`: its size (as stored), time base, frame rate and rotation
    carry over. ``audio_from`` (a :class:`VideoReader` or a path) gives the audio track to keep: copied when
    the container takes its codec, re-encoded otherwise (none in GIF). ``mask=True`` writes "L" masks as a
    grey video.

    :meth:`write` takes each frame in presentation order with the :class:`VideoFrame` it came from (for its
    pts). :meth:`close` flushes the encoders and finishes the file. On an exception inside ``with`` (or a
    failed ``close``) the partial file is deleted. ``audio`` says afterwards what happened to the sound.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        encoding: VideoEncoding,
        *,
        like: VideoInfo,
        audio_from: VideoReader | str | os.PathLike[str] | None = None,
        mask: bool = False,
    ) -> None:
        self.path = Path(path)
        self.encoding = encoding
        self.like = like
        self.mask = mask
        self.frames_written = 0
        self.audio = "none"  # "copied (aac)", "re-encoded (opus → aac)", "none", or "dropped: why"
        self._spec = _codec_for(encoding, mask)
        self._gif = encoding.format == "gif"
        width, height = like.display_size if self._gif else (like.width, like.height)
        if encoding.format == "mp4":
            width, height = width + width % 2, height + height % 2  # 4:2:0 H.264 needs even sizes: pad
        self.size = (width, height)
        self._time_base = _GIF_TIME_BASE if self._gif else like.time_base
        self._last_pts: int | None = None
        self._first_time: float | None = None
        self._pending: Any = None  # the last frame written, encoded when the next one comes (or at close)
        self._durations: dict[int, int] = {}  # pts → duration, for the packets the encoder has yet to return
        rate = like.average_rate or Fraction(25)
        self._nominal_duration = max(1, round(1 / rate / self._time_base))
        self._audio_in: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._audio_peek: Any = None
        self._audio_out: Any = None
        self._audio_copy = False
        self._closed = False
        self._output: Any = None
        try:
            self._output = av.open(
                str(self.path), "w", format=self._spec.container_format, container_options=self._spec.container_options
            )
            self._video = self._add_video_stream()
            if audio_from is not None and not self._gif:
                self._add_audio_stream(audio_from.path if isinstance(audio_from, VideoReader) else Path(audio_from))
        except BaseException as exc:
            self._abort()
            if isinstance(exc, av.FFmpegError):
                raise BgoneError(f"cannot start writing {self.path.name} as {encoding.format}: {_reason(exc)}") from exc
            raise

    def _add_video_stream(self) -> Any:
        like, spec = self.like, self._spec
        rate = like.average_rate or Fraction(25)
        stream = self._output.add_stream(spec.codec, rate=rate, options=spec.options)
        stream.width, stream.height = self.size
        stream.pix_fmt = spec.pix_fmt
        # The source's time base, so every frame keeps its own pts (variable frame rates survive).
        stream.codec_context.time_base = self._time_base
        stream.time_base = self._time_base
        if spec.pix_fmt.startswith("yuv"):
            cc = stream.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range = 1, 1, 1, 1  # BT.709, limited
        if like.rotation and not self._gif:
            # The display matrix (MP4/MOV tkhd matrix, Matroska projection) makes players turn the frames;
            # PyAV takes counter-clockwise degrees.
            stream.set_display_rotation(-like.rotation)
        return stream

    # -- audio ---------------------------------------------------------------------------------------------
    def _add_audio_stream(self, source: Path) -> None:
        try:
            container = av.open(str(source), "r", metadata_errors="replace")
        except av.FFmpegError as exc:
            raise VideoLoadError(f"cannot read the audio of {_short(source.name)}: {_reason(exc)}") from None
        self._audio_in = container
        streams = list(container.streams.audio)
        if not streams:
            return
        source_stream = streams[0]
        name = source_stream.codec_context.name if source_stream.codec_context is not None else None
        if name is None:
            self.audio = "dropped: the source's audio codec has no decoder in this FFmpeg build"
            return
        fmt = self.encoding.format
        if name in _AUDIO_COPY[fmt]:
            with contextlib.suppress(ValueError):  # the muxer refuses it after all: re-encode below
                self._audio_out = self._output.add_stream_from_template(source_stream)
                self._audio_copy = True
                self.audio = f"copied ({name})"
        if self._audio_out is None:
            encoder = _AUDIO_ENCODERS[fmt]
            source_rate = source_stream.codec_context.sample_rate or 48_000
            # Opus encodes at 48 kHz only; AAC at its standard rates.
            rate = 48_000 if encoder == "libopus" or source_rate not in _AAC_RATES else source_rate
            layout = "mono" if source_stream.codec_context.channels == 1 else "stereo"
            self._audio_out = self._output.add_stream(encoder, rate=rate, layout=layout)
            self.audio = f"re-encoded ({name} → {self._audio_out.codec_context.name})"
        # Only the audio stream is demuxed here: the video packets are read (and dropped) at the same pace.
        self._audio_packets = container.demux(source_stream)

    def _advance_audio(self, until: float | None) -> None:
        """Mux the source's audio up to ``until`` seconds (all of it for None), so audio and video interleave
        as they are written and the muxer never holds more than a few frames' worth."""
        if self._audio_packets is None:
            return
        try:
            while True:
                packet = self._audio_peek
                if packet is None:
                    packet = next(self._audio_packets, None)
                    if packet is None:
                        self._audio_packets = None
                        break
                stamp = packet.pts if packet.pts is not None else packet.dts
                if until is not None and stamp is not None and float(stamp * packet.time_base) > until:
                    self._audio_peek = packet
                    return
                self._audio_peek = None
                self._mux_audio(packet)
            if not self._audio_copy:
                self._output.mux(self._audio_out.encode(None))
        except av.FFmpegError as exc:
            raise VideoLoadError(f"the audio of the source is corrupt ({_reason(exc)}): upload it again") from None

    def _mux_audio(self, packet: Any) -> None:
        if self._audio_copy:
            if packet.size:  # the demuxer's final empty packet is a flush marker, not data
                packet.stream = self._audio_out
                self._output.mux(packet)
            return
        for frame in packet.decode():
            self._output.mux(self._audio_out.encode(frame))

    # -- frames --------------------------------------------------------------------------------------------
    def write(self, image: Image.Image, frame: VideoFrame) -> None:
        """Encode ``image`` ("RGBA" cut-out, "RGB" taken as opaque; "L" for a mask writer) at ``frame``'s
        timestamp. ``image`` is the size of the source as stored (``like.width`` x ``like.height``)."""
        if self._closed:
            raise ValueError(f"{self.path.name} is closed: open a new VideoWriter")
        expected = (self.like.width, self.like.height)
        if image.size != expected:
            raise ValueError(
                f"frame {frame.index} is {image.size[0]}x{image.size[1]}, not the source's {expected[0]}x{expected[1]}"
            )
        if self.mask and image.mode != "L":
            raise ValueError(f"a mask writer takes 'L' images, not {image.mode!r} (frame {frame.index})")
        if not self.mask and image.mode not in ("RGBA", "RGB"):
            raise ValueError(f"a cut-out writer takes 'RGBA' images, not {image.mode!r} (frame {frame.index})")
        pts = self._pts(frame)
        if self._first_time is None:
            self._first_time = frame.time
        self._advance_audio(frame.time)
        av_frame = self._to_av_frame(image)
        av_frame.pts = pts
        av_frame.time_base = self._time_base
        # Each frame is encoded when the next one arrives: only then is its duration known (VFR), and
        # the encoders leave packet durations to the caller. The last one ends where the source ends.
        if self._pending is not None:
            self._encode(self._pending, pts - self._pending.pts)
        self._pending = av_frame
        self.frames_written += 1

    def _encode(self, av_frame: Any, duration: int) -> None:
        self._durations[av_frame.pts] = duration
        try:
            self._mux_video(self._video.encode(av_frame))
        except av.FFmpegError as exc:
            raise BgoneError(f"cannot encode a frame as {self.encoding.format}: {_reason(exc)}") from exc

    def _mux_video(self, packets: list[Any]) -> None:
        for packet in packets:
            # Durations make the container's duration right (MP4/MOV take the last sample's from it, Matroska
            # the segment's end, GIF the last delay). Encoders with lookahead return packets frames later.
            packet.duration = self._durations.pop(packet.pts, self._nominal_duration)
            self._output.mux(packet)

    def _last_duration(self, pts: int) -> int:
        """The last frame lasts until the source's end, if that is plausible; else one nominal frame."""
        end = round(((self._first_time or 0.0) + self.like.duration) / self._time_base)
        duration = end - pts
        return duration if 0 < duration <= 4 * self._nominal_duration else self._nominal_duration

    def _pts(self, frame: VideoFrame) -> int:
        pts = round(frame.time / self._time_base) if self._gif or frame.pts is None else frame.pts
        if self._last_pts is not None and pts <= self._last_pts:
            # Encoders refuse a pts that does not grow: GIF's 1/100 s can merge close frames, and files
            # without timestamps can repeat one. Nudging by one tick keeps every frame.
            pts = self._last_pts + 1
        self._last_pts = pts
        return pts

    def _to_av_frame(self, image: Image.Image) -> Any:
        fmt = self.encoding.format
        if self._gif:
            image = _upright(image, self.like.rotation)
            if self.mask:
                return av.VideoFrame.from_ndarray(np.asarray(image), format="gray")
            return av.VideoFrame.from_ndarray(self._gif_palette_frame(image), format="pal8")
        if self.mask:
            array, layout = np.asarray(image), "gray"
        elif fmt == "mp4":
            array, layout = _composite(image, self.encoding.background), "rgb24"
        else:
            array, layout = np.asarray(image.convert("RGBA")), "rgba"
        pad_y, pad_x = self.size[1] - array.shape[0], self.size[0] - array.shape[1]
        if pad_x or pad_y:
            pad = ((0, pad_y), (0, pad_x)) + (((0, 0),) if array.ndim == 3 else ())
            array = np.pad(array, pad, mode="edge")
        source = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=layout)
        return source.reformat(format=self._spec.pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")

    def _gif_palette_frame(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """(indices, ARGB palette) for one frame: its own adaptive palette, index 255 transparent."""
        colors = _GIF_COLORS[self.encoding.quality]
        method, dither = _GIF_PALETTE[self.encoding.write_mode]
        rgba = np.asarray(image.convert("RGBA"))
        transparent = rgba[..., 3] < _ALPHA_THRESHOLD
        rgb = rgba[..., :3].copy()
        palette = np.zeros((256, 4), np.uint8)
        palette[:, 0] = 255  # opaque: FFmpeg's GIF encoder takes the entry with the lowest alpha as transparent
        if transparent.all():
            indices = np.full(transparent.shape, _GIF_TRANSPARENT, np.uint8)
        else:
            if transparent.any():
                # Invisible pixels take a visible colour, so they spend no palette entry of their own.
                rgb[transparent] = rgb[~transparent][0]
            quantized = Image.fromarray(rgb, "RGB").quantize(colors=min(colors, 255), method=method, dither=dither)
            indices = np.array(quantized, dtype=np.uint8)
            entries = np.array(quantized.getpalette() or [], np.uint8).reshape(-1, 3)[:255]
            palette[: len(entries), 1:] = entries
        if transparent.any():
            indices[transparent] = _GIF_TRANSPARENT
            palette[_GIF_TRANSPARENT] = (0, 0, 0, 0)
        return indices, palette

    # -- lifetime ------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush the encoders, mux the rest of the audio and finish the file. Nothing written: ValueError
        (and no file)."""
        if self._closed:
            return
        try:
            if self.frames_written == 0:
                raise ValueError(f"no frames were written to {self.path.name}: a video needs at least one")
            self._encode(self._pending, self._last_duration(self._pending.pts))
            self._pending = None
            try:
                self._mux_video(self._video.encode(None))
            except av.FFmpegError as exc:
                raise BgoneError(f"cannot finish encoding {self.path.name}: {_reason(exc)}") from exc
            self._advance_audio(None)
            try:
                self._output.close()
            except av.FFmpegError as exc:
                raise BgoneError(f"cannot finish writing {self.path.name}: {_reason(exc)}") from exc
            self._output = None
            self._closed = True
            self._close_audio()
        except BaseException:
            self._abort()
            raise

    def _close_audio(self) -> None:
        self._audio_packets = None
        self._audio_peek = None
        if self._audio_in is not None:
            with contextlib.suppress(Exception):
                self._audio_in.close()
            self._audio_in = None

    def _abort(self) -> None:
        """Drop everything and delete the partial file."""
        self._closed = True
        self._pending = None
        if self._output is not None:
            with contextlib.suppress(Exception):
                self._output.close()
            self._output = None
        self._close_audio()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            self._abort()
        else:
            self.close()


def _composite(image: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    """RGB of ``image`` over a solid ``background`` (straight alpha), as uint8."""
    if image.mode == "RGB":
        return np.asarray(image)
    base = Image.new("RGB", image.size, background)
    base.paste(image.convert("RGB"), mask=image.getchannel("A"))  # a masked paste blends: 2x alpha_composite's speed
    return np.asarray(base)


def _upright(image: Image.Image, rotation: int) -> Image.Image:
    """Turn a stored frame ``rotation`` degrees clockwise (Pillow's ROTATE_* turn counter-clockwise)."""
    turn = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    return image.transpose(turn[rotation]) if rotation in turn else image
