"""Encoding: frames to PNG (APNG), WebP, GIF or JPEG bytes, their MIME types and file extensions."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from bgone.errors import InputError
from bgone.imaging.colors import Color, composite
from bgone.imaging.frames import DEFAULT_DURATION_MS, frame_duration, unify_alpha

OUTPUT_FORMATS = ("png", "webp", "gif", "jpeg")
MIME_TYPES: dict[str, str] = {"png": "image/png", "webp": "image/webp", "gif": "image/gif", "jpeg": "image/jpeg"}
EXTENSIONS: dict[str, str] = {"png": ".png", "webp": ".webp", "gif": ".gif", "jpeg": ".jpg"}
_FORMAT_ALIASES = {"jpg": "jpeg", "apng": "png"}

DEFAULT_JPEG_QUALITY = 90
DEFAULT_WEBP_QUALITY = 90
GIF_ALPHA_THRESHOLD = 128


def normalize_format(fmt: str) -> str:
    """ "PNG", ".jpg", "jpeg" → the canonical output name ("png", "jpeg", ...); InputError otherwise."""
    key = fmt.strip().lower().lstrip(".")
    key = _FORMAT_ALIASES.get(key, key)
    if key not in MIME_TYPES:
        raise InputError(f"unsupported output format {fmt!r}: use one of png, webp, gif, jpeg")
    return key


def mime_for(fmt: str) -> str:
    return MIME_TYPES[normalize_format(fmt)]


def extension_for(fmt: str) -> str:
    """The file extension with its dot: ".png", ".webp", ".gif", ".jpg"."""
    return EXTENSIONS[normalize_format(fmt)]


def encode_image(
    frames: Sequence[Image.Image],
    fmt: str,
    *,
    durations: Sequence[int] | None = None,
    loop: int = 0,
    background: Color | Image.Image | None = None,
    quality: int | None = None,
) -> bytes:
    """Encode frames as png, webp, gif or jpeg (alias jpg); several frames make an animation.

    * ``background`` (an RGB(A) colour or an image, resized to cover): every frame is composited over it
      first. A fully transparent colour (alpha 0) means "no background".
    * **png**: lossless, keeps alpha; several frames → APNG. ``quality`` is ignored.
    * **webp**: lossy at ``quality`` (default 90) with the alpha plane stored losslessly, so cut-out edges
      stay exact while the colours compress well; ``quality=100`` → fully lossless. Colour under fully
      transparent pixels is not preserved (it is invisible). Several frames → animated WebP.
    * **gif**: 256-colour palette per frame. GIF transparency is binary: alpha < 128 becomes transparent,
      everything else opaque (soft edges get hard; pass a ``background`` for smooth edges). Several
      frames → animated GIF with ``disposal=2``; consecutive identical frames are merged by Pillow (their
      durations are summed).
    * **jpeg**: no alpha and no animation: the first frame over ``background`` (default white), at
      ``quality`` (default 90).
    * Frames that are all "L" (masks) and no ``background``: saved greyscale (png, jpeg, gif; webp as RGB).

    ``durations`` are ms per frame (default 100 each), ``loop`` 0 = forever.
    """
    key = normalize_format(fmt)
    if not frames:
        raise ValueError("encode_image needs at least one frame")
    if key == "jpeg":
        frames = frames[:1]
    if background is None and all(f.mode == "L" for f in frames):
        frames = list(frames)  # masks: greyscale PNG/JPEG/GIF as they are (WebP has no grey mode: RGB)
        if key == "webp":
            frames = [f.convert("RGB") for f in frames]
    else:
        if key == "jpeg" and background is None:
            background = (255, 255, 255)
        frames = [_prepare_frame(f, background) for f in frames]
        # All frames in one mode: RGBA as soon as one of them is transparent.
        frames = unify_alpha(frames)
    delays = _frame_durations(durations, len(frames))
    buffer = io.BytesIO()
    first, rest = frames[0], frames[1:]
    if key == "jpeg":
        first = first if first.mode in ("L", "RGB") else first.convert("RGB")
        first.save(buffer, "JPEG", quality=quality or DEFAULT_JPEG_QUALITY)
    elif key == "png":
        if rest:
            first.save(buffer, "PNG", save_all=True, append_images=rest, duration=delays, loop=loop)
        else:
            first.save(buffer, "PNG")
    elif key == "webp":
        q = DEFAULT_WEBP_QUALITY if quality is None else quality
        options: dict[str, Any] = {"quality": q, "lossless": q >= 100, "alpha_quality": 100, "method": 4}
        if rest:
            first.save(buffer, "WEBP", save_all=True, append_images=rest, duration=delays, loop=loop, **options)
            if first.mode == "RGBA":
                _set_webp_alpha_flag(buffer)
        else:
            first.save(buffer, "WEBP", **options)
    else:  # gif
        transparent = first.mode == "RGBA"
        paletted = [_to_gif_palette(f, transparent) for f in frames]
        options = {"transparency": 255} if transparent else {}
        if len(paletted) > 1:
            paletted[0].save(
                buffer,
                "GIF",
                save_all=True,
                append_images=paletted[1:],
                duration=delays,
                loop=loop,
                disposal=2,
                **options,
            )
        else:
            paletted[0].save(buffer, "GIF", **options)
    return buffer.getvalue()


def _set_webp_alpha_flag(buffer: io.BytesIO) -> None:
    """Set the VP8X "has alpha" flag of an animated WebP with transparent frames.

    libwebp crops sub-frames to what changes; when those rectangles are opaque it leaves the flag unset
    although the canvas around them is transparent, and decoders that trust the flag (Pillow) then show
    black there. The flag only announces that transparency may occur, so setting it is always valid.
    """
    data = buffer.getbuffer()
    if len(data) > 20 and bytes(data[12:16]) == b"VP8X":
        data[20] |= 0x10
    del data  # release the export so the buffer stays usable


def _prepare_frame(frame: Image.Image, background: Color | Image.Image | None) -> Image.Image:
    if frame.mode not in ("RGB", "RGBA"):
        frame = frame.convert("RGBA" if "A" in frame.getbands() or "transparency" in frame.info else "RGB")
    if background is None or (isinstance(background, tuple) and len(background) == 4 and background[3] == 0):
        return frame
    return composite(frame, background)


def _frame_durations(durations: Sequence[int] | None, count: int) -> list[int]:
    if not durations:
        return [DEFAULT_DURATION_MS] * count
    values = [frame_duration(d) for d in durations][:count]
    return values + [values[-1]] * (count - len(values))


def _to_gif_palette(frame: Image.Image, transparent: bool) -> Image.Image:
    """RGB(A) → "P". With transparency, index 255 is reserved for alpha < GIF_ALPHA_THRESHOLD."""
    if frame.mode == "L":
        return frame.convert("P")  # 256 greys fit the palette exactly
    if not transparent:
        return frame.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    rgba = np.asarray(frame.convert("RGBA"))
    clear = rgba[:, :, 3] < GIF_ALPHA_THRESHOLD
    rgb = rgba[:, :, :3].copy()
    if clear.all():
        paletted = Image.new("P", frame.size, 255)
        paletted.putpalette([0, 0, 0] * 256)
        paletted.info["transparency"] = 255
        return paletted
    # Paint the invisible pixels with a visible colour so that the 255 palette entries go to what shows.
    rgb[clear] = rgb[~clear][0]
    quantized = Image.fromarray(rgb, "RGB").quantize(
        255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG
    )
    indices = np.asarray(quantized).copy()
    indices[clear] = 255
    palette = (quantized.getpalette() or [])[: 255 * 3]
    palette += [0] * (256 * 3 - len(palette))
    paletted = Image.fromarray(indices, "P")
    paletted.putpalette(palette)
    paletted.info["transparency"] = 255
    return paletted


