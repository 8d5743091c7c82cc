"""Decoded frames: the one in-memory image type every wing passes around, and the frame rules that
decoding and encoding share (durations, one colour mode for all frames of an animation)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

DEFAULT_DURATION_MS = 100


@dataclass
class DecodedImage:
    """Frames ready for a model: each "RGB" or "RGBA" (all frames the same mode), upright, in sRGB."""

    frames: list[Image.Image]
    durations: list[int] = field(default_factory=list)  # ms per frame
    loop: int = 0  # 0 = forever (also when the file says nothing), otherwise the file's value as Pillow reads it
    source_format: str | None = None  # Pillow's format name: "JPEG", "PNG", ...; None for arrays
    name: str | None = None  # file stem, URL path stem, or None

    def __post_init__(self) -> None:
        if not self.frames:
            raise ValueError("DecodedImage needs at least one frame")
        if not self.durations:
            self.durations = [DEFAULT_DURATION_MS] * len(self.frames)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.frames[0].size

    @property
    def is_animated(self) -> bool:
        return len(self.frames) > 1

    @property
    def has_alpha(self) -> bool:
        """True when some frame is RGBA with at least one pixel that is not fully opaque."""
        return any(f.mode == "RGBA" and f.getchannel("A").getextrema()[0] < 255 for f in self.frames)




def frame_duration(value: Any) -> int:
    # Missing or zero delays play at 100 ms in browsers; normalise so callers can re-encode faithfully.
    try:
        ms = round(float(value))
    except (TypeError, ValueError):
        return DEFAULT_DURATION_MS
    return ms if ms > 0 else DEFAULT_DURATION_MS



def unify_alpha(frames: list[Image.Image]) -> list[Image.Image]:
    """Keep alpha only if some frame is actually transparent; then every frame is RGBA."""
    transparent = any(f.mode == "RGBA" and f.getchannel("A").getextrema()[0] < 255 for f in frames)
    mode = "RGBA" if transparent else "RGB"
    return [f if f.mode == mode else f.convert(mode) for f in frames]

