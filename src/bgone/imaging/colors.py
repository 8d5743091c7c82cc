"""Colours and compositing: parse a colour the way users write it, lay a cut-out over a colour or an image."""

from __future__ import annotations

import re

from PIL import Image, ImageColor

from bgone.errors import InputError

Color = tuple[int, int, int] | tuple[int, int, int, int]


def composite(image: Image.Image, background: Color | Image.Image) -> Image.Image:
    """``image`` (any mode, usually RGBA) over ``background``.

    ``background`` is an RGB colour, an RGBA colour, or an image (resized to cover the frame, centred
    crop). The result is "RGB" when the background is opaque, "RGBA" when it has transparency itself.
    """
    fg = image if image.mode == "RGBA" else image.convert("RGBA")
    if isinstance(background, Image.Image):
        bg = _cover(background.convert("RGBA"), fg.size)
    else:
        color = tuple(int(c) for c in background)
        if len(color) not in (3, 4) or not all(0 <= c <= 255 for c in color):
            raise InputError(f"invalid background colour {background!r}: expected 3 or 4 values in 0..255")
        bg = Image.new("RGBA", fg.size, color if len(color) == 4 else (*color, 255))
    out = Image.alpha_composite(bg, fg)
    return out.convert("RGB") if bg.getchannel("A").getextrema()[0] == 255 else out


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    width, height = size
    scale = max(width / image.width, height / image.height)
    resized_w, resized_h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    if (resized_w, resized_h) != image.size:
        image = image.resize((resized_w, resized_h), Image.Resampling.LANCZOS)
    left, top = (resized_w - width) // 2, (resized_h - height) // 2
    return image.crop((left, top, left + width, top + height))


def parse_color(text: str) -> Color:
    """ "#rrggbb", "#rgb", "#rrggbbaa", "#rgba", CSS names ("white"), "transparent", "rgb(...)" and
    "r,g,b" / "r,g,b,a" → an RGB or RGBA tuple. InputError for anything else."""
    value = text.strip()
    if value.lower() in ("transparent", "none"):
        return (0, 0, 0, 0)
    if re.fullmatch(r"\d{1,3}\s*(,\s*\d{1,3}\s*){2,3}", value):
        parts = tuple(int(p) for p in value.split(","))
        if all(0 <= p <= 255 for p in parts):
            return parts  # type: ignore[return-value]
    else:
        try:
            return ImageColor.getrgb(value)
        except ValueError:
            pass
    raise InputError(f"invalid colour {text!r}: use a name (white), #rrggbb, #rrggbbaa, #rgb or r,g,b")


