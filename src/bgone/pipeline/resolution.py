"""The operating resolution: the size the network runs at, as one frozen value parsed once at the edge.

Three kinds, whatever the entry point (``-r``/``--resolution``, fal's enums, rembg's ``extras``, Python):

* **native**: the model's own resolution (1024² for most, 2048² for HR, 2560x1440 for Light 2K,
  turned for portrait images; the image's own size for the dynamic models);
* **fixed** ``WxH``: every image resized to it (each side a multiple of 32, the network's constraint);
* **dynamic** ``dynamic:N``: the image's own size floored to multiples of 32, the longer side capped at
  ``N`` (at most 2304, the largest size the dynamic models were trained on).

``str(resolution)`` is the canonical text (``native``, ``1024x1024``, ``dynamic``, ``dynamic:1024``) that
batch keys, logs and reports use. No torch here: the service plans requests with it without loading a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Size = tuple[int, int]  # (width, height), PIL order
DYNAMIC_MAX_SIDE = 2304  # the dynamic models were trained on 256..2304 per side
DEFAULT_NATIVE: Size = (1024, 1024)  # the native resolution of checkpoints outside the registry


@dataclass(frozen=True)
class Resolution:
    kind: Literal["native", "fixed", "dynamic"] = "native"
    size: Size | None = None  # fixed: (width, height)
    cap: int = DYNAMIC_MAX_SIDE  # dynamic: the longer side's cap

    @classmethod
    def native(cls) -> Resolution:
        return cls()

    @classmethod
    def fixed(cls, width: int, height: int | None = None) -> Resolution:
        height = width if height is None else height
        for side in (width, height):
            if side <= 0 or side % 32:
                raise ValueError(f"resolution {width}x{height}: each side must be a positive multiple of 32")
        return cls("fixed", (int(width), int(height)))

    @classmethod
    def dynamic(cls, cap: int = DYNAMIC_MAX_SIDE) -> Resolution:
        if cap < 32:
            raise ValueError(f"dynamic resolution: the cap must be at least 32, got {cap}")
        return cls("dynamic", None, min(int(cap), DYNAMIC_MAX_SIDE))

    @classmethod
    def parse(cls, value: Resolution | str | int | Sequence[int] | None) -> Resolution:
        """``None``/``"native"``, ``"1024x1024"``, ``"2560x1440"`` (W x H), ``1024``, ``(w, h)``, ``"dynamic"``
        (also ``"auto"``) or ``"dynamic:N"``; ValueError with the accepted forms otherwise."""
        if value is None or isinstance(value, Resolution):
            return value or cls.native()
        if isinstance(value, bool):
            raise ValueError(f"resolution {value!r} is not WxH (e.g. 1024x1024), a single side (1024) or 'dynamic'")
        if isinstance(value, int):
            return cls.fixed(value)
        if not isinstance(value, str):
            width, height = (int(v) for v in value)
            return cls.fixed(width, height)
        text = value.strip().lower()
        if text == "native":
            return cls.native()
        if text in ("dynamic", "auto"):
            return cls.dynamic()
        if text.startswith("dynamic:"):
            cap = text.partition(":")[2]
            if not cap.isdigit() or int(cap) < 32:
                raise ValueError(f"resolution {value!r}: 'dynamic:N' needs a cap N of at least 32")
            return cls.dynamic(int(cap))
        match = re.fullmatch(r"(\d+)\s*(?:[x×*,]\s*(\d+))?", text)
        if not match:
            raise ValueError(f"resolution {value!r} is not WxH (e.g. 1024x1024), a single side (1024) or 'dynamic'")
        return cls.fixed(int(match.group(1)), int(match.group(2) or match.group(1)))

    def __str__(self) -> str:
        if self.kind == "fixed":
            return "{}x{}".format(*self.size)  # type: ignore[str-format]
        if self.kind == "dynamic":
            return "dynamic" if self.cap == DYNAMIC_MAX_SIDE else f"dynamic:{self.cap}"
        return "native"

    @property
    def is_native(self) -> bool:
        return self.kind == "native"

    def capped(self, max_side: int | None, native: Size | None = DEFAULT_NATIVE) -> Resolution:
        """Every side at most ``max_side`` (floored to a multiple of 32; None: no cap). A native resolution is
        first made explicit from ``native`` (None: a dynamic model), so the cap applies to it too."""
        if not max_side:
            return self
        cap = max(32, max_side // 32 * 32)
        if self.kind == "native":
            base = Resolution.dynamic() if native is None else Resolution.fixed(*native)
            return base.capped(max_side)
        if self.kind == "dynamic":
            return Resolution.dynamic(min(self.cap, cap))
        width, height = self.size  # type: ignore[misc]
        return Resolution.fixed(min(width, cap), min(height, cap))

    def operating_size(self, image_size: Size, native: Size | None) -> Size:
        """The size the network runs at for an image of ``image_size`` on a model whose native resolution
        is ``native`` (None: a dynamic model). A native resolution whose sides differ (Light 2K's 2560x1440)
        is turned to match the image's orientation, so a portrait photo runs at 1440x2560 rather than
        being squashed into landscape; a fixed resolution is used as given."""
        if self.kind == "fixed":
            return self.size  # type: ignore[return-value]
        if self.kind == "dynamic" or native is None:
            return dynamic_size(image_size, self.cap)
        width, height = native
        if width > height and image_size[1] > image_size[0]:
            width, height = height, width
        return width, height


NATIVE = Resolution()


def dynamic_size(size: Size, max_side: int = DYNAMIC_MAX_SIDE) -> Size:
    """The image's own size floored to multiples of 32, the longer side capped at ``max_side``."""
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return tuple(max(32, int(side * scale) // 32 * 32) for side in (width, height))  # type: ignore[return-value]
