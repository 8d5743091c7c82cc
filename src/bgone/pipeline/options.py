"""What one removal does besides running the network: :class:`RemovalOptions`, parsed once, and
:class:`RembgOptions`, rembg's mask options (applied by :mod:`bgone.pipeline.rembg_mask`).

Strings users write (``"2048x2048"``, ``"dynamic"``, ``"#ffffff"``, ``"white"``) become typed values when an
options object is made, so everything downstream works with a :class:`~bgone.pipeline.resolution.Resolution`
and colour tuples. No torch here: the service plans requests with it without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from PIL import Image

from bgone.imaging.colors import parse_color
from bgone.pipeline.resolution import NATIVE, Resolution

Background = tuple[int, ...] | Image.Image | str | None


@dataclass(frozen=True)
class RemovalOptions:
    """``operating_resolution``: see :class:`Resolution` (native by default). ``refine_foreground``:
    estimate the subject's true colours at soft edges (on by default, as on fal). ``output_mask``: callers
    also want the mask. ``mask_only``: the result's frames are the mask. ``background``: a colour or an
    image to composite onto (RGB result). ``crop``: crop to the subject's bounding box."""

    operating_resolution: Resolution = NATIVE
    refine_foreground: bool = True
    output_mask: bool = False
    mask_only: bool = False
    background: tuple[int, ...] | Image.Image | None = None
    crop: bool = False

    def __post_init__(self) -> None:
        # Frozen: parse in place once, so every options object holds typed values.
        object.__setattr__(self, "operating_resolution", Resolution.parse(self.operating_resolution))  # type: ignore[arg-type]
        if isinstance(self.background, str):
            object.__setattr__(self, "background", parse_color(self.background))

    def updated(self, **changes: Any) -> RemovalOptions:
        """A copy with ``changes`` (parsed like the constructor's arguments); TypeError for unknown names."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return replace(self, **changes)


@dataclass(frozen=True)
class RembgOptions:
    """rembg's per-request options (``a``, ``af``, ``ab``, ``ae``, ``om``, ``ppm``, ``bgc``) plus colour
    refinement, which bgone does by default (rembg leaves the background's colour in soft edges)."""

    alpha_matting: bool = False
    foreground_threshold: int = 240
    background_threshold: int = 10
    erode_size: int = 10
    only_mask: bool = False
    post_process_mask: bool = False
    bgcolor: tuple[int, int, int, int] | None = None
    refine_foreground: bool = True
