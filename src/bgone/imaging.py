"""Image I/O: decode every input kind and format to RGB/RGBA frames, encode results, data URIs, colours.

Knows nothing about models. Everything a caller can get wrong raises an :class:`~bgone.errors.InputError`
subclass with a one-line message: :class:`ImageLoadError` (not a readable image), :class:`ImageTooLargeError`
(over a byte, pixel or frame limit, checked before pixels are decoded) or :class:`FileDownloadError` (URLs).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import re
import struct
import threading
import urllib.parse
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageCms, ImageColor, ImageSequence, UnidentifiedImageError, features

from .errors import ImageLoadError, ImageTooLargeError, InputError

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "EXTENSIONS",
    "MIME_TYPES",
    "OUTPUT_FORMATS",
    "Color",
    "DecodedImage",
    "ImageSource",
    "Readable",
    "composite",
    "encode_image",
    "extension_for",
    "load_image",
    "mime_for",
    "normalize_format",
    "parse_color",
    "parse_data_uri",
    "to_data_uri",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FRAMES = 300
DEFAULT_DURATION_MS = 100

Color = tuple[int, int, int] | tuple[int, int, int, int]


class Readable(Protocol):
    """A binary file-like object (open(..., "rb"), io.BytesIO, an upload's stream)."""

    def read(self, size: int = -1, /) -> bytes: ...


ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray | Readable

# --------------------------------------------------------------------------------------------------------------
# The decoded image


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


# --------------------------------------------------------------------------------------------------------------
# Loading

# Formats whose extra frames are an animation; other multi-frame files (TIFF pages, MPO's second picture,
# ICO sizes, PSD layers) are decoded as their first frame only.
_ANIMATION_FORMATS = frozenset({"GIF", "PNG", "WEBP", "AVIF", "FLI"})
# Never handed untrusted bytes: Pillow's EPS reader runs Ghostscript, a long-standing attack surface.
_BLOCKED_FORMATS = frozenset({"EPS"})

_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_heif_lock = threading.Lock()
_heif_registered = False


def load_image(
    source: ImageSource,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    fetcher: Callable[[str], bytes] | None = None,
) -> DecodedImage:
    """Decode ``source`` into RGB/RGBA frames.

    ``source`` is a file path (``str`` or path-like), raw bytes (``bytes``/``bytearray``/``memoryview``), a
    binary file-like object, a ``PIL.Image.Image``, a ``numpy.ndarray`` (H×W grey, H×W×3 RGB, H×W×4 RGBA;
    uint8, uint16 (scaled by 1/257), bool, or float in [0, 1]), an ``http(s)://`` URL (downloaded with
    ``fetcher(url)``, default :func:`bgone.fetch.fetch_url` with ``max_bytes``) or a ``data:`` URI.

    Limits are checked before pixels are decoded: ``max_bytes`` for the encoded input, ``max_pixels`` for
    width×height of a frame (from the header) and ``max_frames`` for animations.

    EXIF orientation is applied, an embedded ICC profile is converted to sRGB, and animation frames come
    out fully composited. All frames share one mode: "RGBA" when some frame has transparency, else "RGB".
    """
    if isinstance(source, Image.Image):
        name = Path(source.filename).stem if getattr(source, "filename", "") else None
        return _decode_pil(source, name=name, max_pixels=max_pixels, max_frames=max_frames, owned=False)
    if isinstance(source, np.ndarray):
        return _from_array(source, max_pixels=max_pixels)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode_bytes(bytes(source), None, max_bytes, max_pixels, max_frames)
    if isinstance(source, str):
        return _load_string(source, max_bytes, max_pixels, max_frames, fetcher)
    if isinstance(source, os.PathLike):
        return _load_path(Path(os.fspath(source)), max_bytes, max_pixels, max_frames)
    if callable(getattr(source, "read", None)):
        data = _read_stream(source, max_bytes)
        raw_name = getattr(source, "name", None)
        name = Path(raw_name).stem if isinstance(raw_name, str) and raw_name else None
        return _decode_bytes(data, name, max_bytes, max_pixels, max_frames)
    raise ImageLoadError(f"unsupported image source of type {type(source).__name__}")


def _load_string(
    text: str, max_bytes: int, max_pixels: int, max_frames: int, fetcher: Callable[[str], bytes] | None
) -> DecodedImage:
    stripped = text.strip()
    scheme = stripped.split(":", 1)[0].lower() if ":" in stripped else ""
    if scheme == "data":
        # Refuse an oversized URI before decoding it: base64 inflates by 4/3, percent-encoding up to 3×.
        inflation = 4 / 3 if ";base64," in stripped[:256].lower() else 3
        if len(stripped) > max_bytes * inflation + 1024:
            raise ImageTooLargeError(
                f"data URI of {len(stripped):,} characters is over the limit of {max_bytes:,} bytes"
            )
        _, data = parse_data_uri(stripped)
        return _decode_bytes(data, None, max_bytes, max_pixels, max_frames)
    if scheme in ("http", "https"):
        if fetcher is None:
            from .fetch import fetch_url

            data = fetch_url(stripped, max_bytes=max_bytes)
        else:
            data = fetcher(stripped)
        return _decode_bytes(data, _url_stem(stripped), max_bytes, max_pixels, max_frames)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", stripped):
        raise ImageLoadError(f"unsupported URL scheme {scheme!r} in {_short(stripped)} (use http, https or data)")
    return _load_path(Path(text), max_bytes, max_pixels, max_frames)


def _url_stem(url: str) -> str | None:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    stem = PurePosixPath(path).stem
    return stem or None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_path(path: Path, max_bytes: int, max_pixels: int, max_frames: int) -> DecodedImage:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageLoadError(f"no such file: {_short(str(path))}") from None
    except ValueError:  # a NUL byte: no file can have this name
        raise ImageLoadError(f"not a valid file name: {_short(repr(str(path)))}") from None
    except OSError as exc:
        raise ImageLoadError(f"cannot read {_short(str(path))}: {exc.strerror or exc}") from None
    if path.is_dir():
        raise ImageLoadError(f"not a file: {_short(str(path))} is a directory")
    if stat.st_size > max_bytes:
        raise ImageTooLargeError(f"{path.name} is {stat.st_size:,} bytes, over the limit of {max_bytes:,} bytes")
    try:
        with path.open("rb") as fh:
            data = _read_stream(fh, max_bytes)
    except OSError as exc:
        raise ImageLoadError(f"cannot read {_short(str(path))}: {exc.strerror or exc}") from None
    return _decode_bytes(data, path.stem or None, max_bytes, max_pixels, max_frames)


def _read_stream(stream: Any, max_bytes: int) -> bytes:
    # Read one byte past the limit: enough to know it is too large without reading all of it.
    try:
        data = stream.read(max_bytes + 1)
    except OSError as exc:
        raise ImageLoadError(f"cannot read the image stream: {exc}") from None
    if isinstance(data, str):
        raise ImageLoadError("the file-like object returned text; open it in binary mode ('rb')")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageLoadError(f"the file-like object's read() returned {type(data).__name__}, not bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image data is over the limit of {max_bytes:,} bytes")
    return data


def _sniff(data: bytes) -> str | None:
    """The format the first bytes announce, for messages and for picking an optional plugin."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:2] == b"BM":
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if data[4:8] == b"ftyp":
        box_size = int.from_bytes(data[:4], "big")
        end = min(max(box_size, 16), len(data), 4096)
        brands = {data[8:12]} | {data[i : i + 4] for i in range(16, end - 3, 4)}
        if brands & _AVIF_BRANDS:
            return "AVIF"
        if brands & _HEIF_BRANDS:
            return "HEIF"
    return None


def _webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP header without decoding (the layout Pillow's own check reads)."""
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def _ensure_heif_plugin() -> bool:
    """Register pillow-heif's opener on first need; False when it is not installed."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered:
            return True
        try:
            import pillow_heif  # type: ignore[import-not-found]
        except ImportError:
            return False
        pillow_heif.register_heif_opener()
        _heif_registered = True
        return True


def _open_formats() -> list[str]:
    Image.init()
    return [fmt for fmt in Image.OPEN if fmt not in _BLOCKED_FORMATS]


def _decode_bytes(data: bytes, name: str | None, max_bytes: int, max_pixels: int, max_frames: int) -> DecodedImage:
    if not data:
        raise ImageLoadError("empty file: the image has 0 bytes")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"image is {len(data):,} bytes, over the limit of {max_bytes:,} bytes")
    sniffed = _sniff(data)
    if sniffed == "HEIF" and not _ensure_heif_plugin():
        raise ImageLoadError("HEIC/HEIF images need the optional pillow-heif package (pip install pillow-heif)")
    if sniffed == "AVIF" and not features.check("avif"):
        raise ImageLoadError("AVIF is not supported by this Pillow build (Pillow >= 11.3 built with libavif is needed)")

    header_size = _webp_canvas_size(data) if sniffed == "WEBP" else None
    if header_size is not None and header_size[0] * header_size[1] > max_pixels:
        # Pillow's WebP reader allocates the whole canvas inside open(): check before it does.
        width, height = header_size
        raise ImageTooLargeError(
            f"WEBP is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} pixels"
        )
    try:
        # Pillow checks its own decompression-bomb limit inside open(); make its warning an error too (we
        # refuse far smaller images anyway). catch_warnings is process-global: at worst a concurrent thread
        # sees the filter briefly, which only turns that warning into this same error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_open_formats())
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image is over the pixel limit of {max_pixels:,}: {exc}") from None
    except UnidentifiedImageError:
        if sniffed:
            raise ImageLoadError(f"truncated or corrupt {sniffed}: cannot read its header") from None
        raise ImageLoadError(
            "not a recognised image format (JPEG, PNG, WebP, GIF, AVIF, HEIC, TIFF, BMP, ...)"
        ) from None
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"truncated or corrupt {sniffed or 'image'}: {_reason(exc)}") from None
    try:
        return _decode_pil(image, name=name, max_pixels=max_pixels, max_frames=max_frames, owned=True)
    finally:
        image.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return _short(text or type(exc).__name__, 160)


def _source_format(image: Image.Image) -> str | None:
    fmt = image.format
    # MPO is a JPEG with extra pictures appended (phone cameras); viewers show the first, and so do we.
    return "JPEG" if fmt == "MPO" else fmt


def _decode_pil(image: Image.Image, *, name: str | None, max_pixels: int, max_frames: int, owned: bool) -> DecodedImage:
    fmt = _source_format(image)
    label = fmt or "image"
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{label} has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{label} is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} pixels"
        )
    try:
        n_frames = int(getattr(image, "n_frames", 1) or 1)
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"truncated or corrupt {label}: {_reason(exc)}") from None
    animated = n_frames > 1 and (image.format in _ANIMATION_FORMATS or (not owned and image.format is None))
    if animated and n_frames > max_frames:
        raise ImageTooLargeError(f"animation has {n_frames} frames, over the limit of {max_frames} frames")
    if animated and image.format == "WEBP" and getattr(image, "rawmode", None) == "RGBX" and hasattr(image, "_mode"):
        # libwebp's animation decoder composites onto a transparent RGBA canvas, but Pillow labels the
        # frames RGB when the file's VP8X alpha flag is unset (libwebp's encoder leaves it unset when its
        # sub-frames happen to be opaque), dropping real transparency. The fourth byte is that alpha.
        image._mode = "RGBA"
        image.rawmode = "RGBA"

    orientation = _orientation(image)
    icc = image.info.get("icc_profile")
    transform_cache: dict[str, ImageCms.ImageCmsTransform | None] = {}
    start = image.tell() if not owned else 0
    frames: list[Image.Image] = []
    durations: list[int] = []
    try:
        if animated:
            # Pillow's seek() composites each frame onto the canvas with the file's disposal/blend rules.
            for frame in ImageSequence.Iterator(image):
                rgba = _to_rgb(frame, icc, transform_cache, force_alpha=True)
                frames.append(rgba)
                durations.append(_duration(frame.info.get("duration")))
        else:
            if not owned and start != 0:
                image.seek(0)
            image.load()
            frames.append(_to_rgb(image, icc, transform_cache, force_alpha=False))
            durations.append(_duration(image.info.get("duration")))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{label} is over the pixel limit of {max_pixels:,}: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"truncated or corrupt {label}: {_reason(exc)}") from None
    finally:
        if not owned and n_frames > 1:
            with contextlib.suppress(*_DECODE_ERRORS):
                image.seek(start)  # leave the caller's image where it was

    frames = _unify_alpha(frames)
    if orientation is not None:
        frames = [f.transpose(orientation) for f in frames]
    loop = image.info.get("loop", 0)
    return DecodedImage(
        frames=frames,
        durations=durations,
        loop=int(loop) if isinstance(loop, int) else 0,
        source_format=fmt,
        name=name,
    )


def _duration(value: Any) -> int:
    # Missing or zero delays play at 100 ms in browsers; normalise so callers can re-encode faithfully.
    try:
        ms = round(float(value))
    except (TypeError, ValueError):
        return DEFAULT_DURATION_MS
    return ms if ms > 0 else DEFAULT_DURATION_MS


_ORIENTATION_OPS: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(image: Image.Image) -> Image.Transpose | None:
    # The same table as ImageOps.exif_transpose, applied once to every frame of the image.
    try:
        value = image.getexif().get(0x0112)
    except Exception:  # a broken EXIF block should not make the picture unreadable
        return None
    return _ORIENTATION_OPS.get(value) if isinstance(value, int) else None


def _unify_alpha(frames: list[Image.Image]) -> list[Image.Image]:
    """Keep alpha only if some frame is actually transparent; then every frame is RGBA."""
    transparent = any(f.mode == "RGBA" and f.getchannel("A").getextrema()[0] < 255 for f in frames)
    mode = "RGBA" if transparent else "RGB"
    return [f if f.mode == mode else f.convert(mode) for f in frames]


def _to_rgb(
    frame: Image.Image,
    icc: bytes | None,
    cache: dict[str, ImageCms.ImageCmsTransform | None],
    *,
    force_alpha: bool,
) -> Image.Image:
    """One decoded frame → "RGB" or "RGBA" in sRGB."""
    im = _normalize_depth(frame)
    icc = frame.info.get("icc_profile") or icc
    if icc:
        im = _apply_icc(im, icc, cache)
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    if force_alpha and im.mode != "RGBA":
        im = im.convert("RGBA")
    elif im is frame:
        im = im.copy()  # never hand out an image that a later seek() can change
    return im


def _normalize_depth(im: Image.Image) -> Image.Image:
    """Bring exotic modes to L, LA, RGB, RGBA or CMYK (8 bits per channel) without losing range."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return im
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grey (PNG/TIFF): map 0..65535 onto 0..255 instead of clipping at 255.
        arr = np.asarray(im).astype(np.int64)
        return Image.fromarray(_scale16(np.clip(arr, 0, 65535)), "L")
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64))
        scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0  # [0, 1] floats, otherwise 0..255
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return im.convert("RGBA" if has_alpha else "RGB")
    if mode in ("PA", "RGBa", "RGBX", "La"):
        return im.convert({"PA": "RGBA", "RGBa": "RGBA", "RGBX": "RGB", "La": "LA"}[mode])
    if mode == "LAB":
        lab = ImageCms.createProfile("LAB")
        return ImageCms.profileToProfile(im, lab, ImageCms.createProfile("sRGB"), outputMode="RGB") or im
    return im.convert("RGBA" if "A" in im.getbands() else "RGB")


def _scale16(arr: np.ndarray) -> np.ndarray:
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


_ICC_SPACES = {"L": "GRAY", "LA": "GRAY", "RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK"}


def _apply_icc(im: Image.Image, icc: bytes, cache: dict[str, ImageCms.ImageCmsTransform | None]) -> Image.Image:
    """Convert the colour channels from the embedded profile to sRGB; alpha is carried over untouched."""
    space = _ICC_SPACES.get(im.mode)
    if space is None:
        return im
    base_mode = {"LA": "L", "RGBA": "RGB"}.get(im.mode, im.mode)
    if base_mode not in cache:
        cache[base_mode] = _build_transform(icc, base_mode, space)
    transform = cache[base_mode]
    if transform is None:
        return im
    alpha = im.getchannel("A") if im.mode in ("LA", "RGBA") else None
    base = im.convert(base_mode) if alpha is not None else im
    try:
        rgb = ImageCms.applyTransform(base, transform)
    except (ImageCms.PyCMSError, ValueError, OSError):
        return im  # a profile lcms cannot apply: the pixels are still usable as they are
    if rgb is None:  # pragma: no cover - only for inPlace transforms
        return im
    if alpha is not None:
        rgb.putalpha(alpha)
    return rgb


def _build_transform(icc: bytes, mode: str, space: str) -> ImageCms.ImageCmsTransform | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # unreadable profile: ignore it like browsers do
    color_space = (profile.profile.xcolor_space or "").strip().upper()
    if color_space != space:
        return None  # the profile does not describe these pixels (mislabelled file)
    description = (profile.profile.profile_description or "").lower()
    if space == "RGB" and description.startswith("srgb"):
        return None  # already sRGB: skip a near-identity transform
    # The intent the profile asks for (its header), as browsers do; perceptual if it cannot do that one.
    intent = ImageCms.Intent.PERCEPTUAL
    with contextlib.suppress(ImageCms.PyCMSError, ValueError, OSError):
        wanted = ImageCms.Intent(ImageCms.getDefaultIntent(profile))
        if ImageCms.isIntentSupported(profile, wanted, ImageCms.Direction.INPUT):
            intent = wanted
    try:
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB", renderingIntent=intent)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return None


def _from_array(arr: np.ndarray, *, max_pixels: int) -> DecodedImage:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageLoadError(f"unsupported array shape {tuple(arr.shape)}: expected HxW, HxWx3 or HxWx4")
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ImageLoadError(f"empty array of shape {tuple(arr.shape)}")
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"array is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} pixels"
        )
    arr8 = _array_to_uint8(arr)
    if arr8.ndim == 2:
        image = Image.fromarray(arr8, "L").convert("RGB")
    else:
        image = Image.fromarray(np.ascontiguousarray(arr8), "RGB" if arr8.shape[2] == 3 else "RGBA")
    return DecodedImage(frames=_unify_alpha([image]), durations=[DEFAULT_DURATION_MS])


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return _scale16(arr)
    if np.issubdtype(arr.dtype, np.floating):
        values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=1.0, neginf=0.0)
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        low, high = int(arr.min()), int(arr.max())
        if low >= 0 and high <= 255:  # e.g. int64 arrays of 8-bit values
            return arr.astype(np.uint8)
        raise ImageLoadError(f"{arr.dtype} array values span {low}..{high}; expected 0..255 (or use uint16)")
    raise ImageLoadError(f"unsupported array dtype {arr.dtype}: use uint8, uint16, bool or float in [0, 1]")


# --------------------------------------------------------------------------------------------------------------
# Encoding

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
        frames = _unify_alpha(frames)
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
    values = [_duration(d) for d in durations][:count]
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


# --------------------------------------------------------------------------------------------------------------
# Compositing and colours


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


# --------------------------------------------------------------------------------------------------------------
# Data URIs


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    """``data:[<mediatype>][;base64],<data>`` (RFC 2397) → (mime type, bytes).

    The mime type is lower-cased without parameters ("text/plain" when absent). Base64 may be standard
    or URL-safe, with or without padding, and may contain whitespace or percent-escapes.
    """
    text = uri.strip()
    if not text[:5].lower() == "data:":
        raise ImageLoadError(f"not a data URI: {_short(text, 60)!r}")
    header, sep, payload = text[5:].partition(",")
    if not sep:
        raise ImageLoadError("malformed data URI: no ',' between the media type and the data")
    params = [p.strip() for p in header.split(";")]
    is_base64 = len(params) > 1 and params[-1].lower() == "base64"
    mime = (params[0] or "text/plain").lower()
    if is_base64:
        cleaned = re.sub(r"\s+", "", urllib.parse.unquote(payload)).replace("-", "+").replace("_", "/")
        cleaned += "=" * (-len(cleaned.rstrip("=")) % 4) if "=" not in cleaned else ""
        try:
            return mime, base64.b64decode(cleaned, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageLoadError(f"invalid base64 in data URI: {exc}") from None
    return mime, urllib.parse.unquote_to_bytes(payload)
