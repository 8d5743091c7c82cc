"""The names of video formats, qualities and write modes, and :class:`VideoEncoding`: what an output video
should be. No PyAV here, so the service plans video requests without loading FFmpeg (that is
:mod:`bgone.imaging.video`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bgone.errors import InputError

VIDEO_FORMATS = ("mp4", "webm", "mov", "gif")
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})
MIME_TYPES: dict[str, str] = {"mp4": "video/mp4", "webm": "video/webm", "mov": "video/quicktime", "gif": "image/gif"}
QUALITIES = ("low", "medium", "high", "maximum")
WRITE_MODES = ("fast", "balanced", "small")


def is_video_name(name: str) -> bool:
    """True when a file name or URL path ends in one of :data:`VIDEO_EXTENSIONS` (query and fragment
    ignored). Animated GIFs are not videos here: they stay images."""
    path = name.split("?", 1)[0].split("#", 1)[0]
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoEncoding:
    """How to encode an output video. Unknown values are an :class:`~bgone.errors.InputError`."""

    format: str = "webm"  # one of VIDEO_FORMATS
    quality: str = "high"  # one of QUALITIES
    write_mode: str = "balanced"  # one of WRITE_MODES
    background: tuple[int, int, int] = (0, 0, 0)  # what transparent pixels become where the format has no alpha

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("format", self.format, VIDEO_FORMATS),
            ("quality", self.quality, QUALITIES),
            ("write_mode", self.write_mode, WRITE_MODES),
        ):
            if value not in allowed:
                raise InputError(f"unsupported video {field} {value!r}: use one of {', '.join(allowed)}")
        if len(self.background) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in self.background):
            raise InputError(f"video background must be three integers 0-255 (R, G, B), not {self.background!r}")

    @property
    def mime_type(self) -> str:
        return MIME_TYPES[self.format]
