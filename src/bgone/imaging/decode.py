"""Decoding: every input kind (path, bytes, stream, PIL image, array, URL, data URI) and format to
upright sRGB frames, with byte, pixel and frame limits checked before pixels are decoded.

Knows nothing about models. Everything a caller can get wrong raises an :class:`~bgone.errors.InputError`
subclass with a one-line message: :class:`ImageLoadError` (not a readable image), :class:`ImageTooLargeError`
(over a byte, pixel or frame limit) or :class:`FileDownloadError` (URLs).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import threading
import urllib.parse
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageCms, ImageSequence, UnidentifiedImageError, features

from bgone.errors import ImageLoadError, ImageTooLargeError
from bgone.imaging.data_uri import parse_data_uri
from bgone.imaging.frames import DEFAULT_DURATION_MS, DecodedImage, frame_duration, unify_alpha
from bgone.settings import DEFAULT_LIMITS, Limits


class Readable(Protocol):
    """A binary file-like object (open(..., "rb"), io.BytesIO, an upload's stream)."""

    def read(self, size: int = -1, /) -> bytes: ...


ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image | np.ndarray | Readable


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
    limits: Limits = DEFAULT_LIMITS,
    fetcher: Callable[[str], bytes] | None = None,
) -> DecodedImage:
    """Decode ``source`` into RGB/RGBA frames.

    ``source`` is a file path (``str`` or path-like), raw bytes (``bytes``/``bytearray``/``memoryview``), a
    binary file-like object, a ``PIL.Image.Image``, a ``numpy.ndarray`` (H×W grey, H×W×3 RGB, H×W×4 RGBA;
    uint8, uint16 (scaled by 1/257), bool, or float in [0, 1]), an ``http(s)://`` URL (downloaded with
    ``fetcher(url)``, default :func:`bgone.imaging.fetch.fetch_url` with ``limits.max_bytes``) or a ``data:`` URI.

    ``limits`` are checked before pixels are decoded: ``max_bytes`` for the encoded input, ``max_pixels``
    for width×height of a frame (from the header) and ``max_frames`` for animations.

    EXIF orientation is applied, an embedded ICC profile is converted to sRGB, and animation frames come
    out fully composited. All frames share one mode: "RGBA" when some frame has transparency, else "RGB".
    """
    if isinstance(source, Image.Image):
        name = Path(source.filename).stem if getattr(source, "filename", "") else None
        return _decode_pil(source, name=name, limits=limits, owned=False)
    if isinstance(source, np.ndarray):
        return _from_array(source, limits=limits)
    if isinstance(source, bytes | bytearray | memoryview):
        return _decode_bytes(bytes(source), None, limits)
    if isinstance(source, str):
        return _load_string(source, limits, fetcher)
    if isinstance(source, os.PathLike):
        return _load_path(Path(os.fspath(source)), limits)
    if callable(getattr(source, "read", None)):
        data = _read_stream(source, limits.max_bytes)
        raw_name = getattr(source, "name", None)
        name = Path(raw_name).stem if isinstance(raw_name, str) and raw_name else None
        return _decode_bytes(data, name, limits)
    raise ImageLoadError(f"unsupported image source of type {type(source).__name__}")


def _load_string(
    text: str, limits: Limits, fetcher: Callable[[str], bytes] | None
) -> DecodedImage:
    stripped = text.strip()
    scheme = stripped.split(":", 1)[0].lower() if ":" in stripped else ""
    if scheme == "data":
        # Refuse an oversized URI before decoding it: base64 inflates by 4/3, percent-encoding up to 3×.
        inflation = 4 / 3 if ";base64," in stripped[:256].lower() else 3
        if len(stripped) > limits.max_bytes * inflation + 1024:
            raise ImageTooLargeError(
                f"data URI of {len(stripped):,} characters is over the limit of {limits.max_bytes:,} bytes"
            )
        _, data = parse_data_uri(stripped)
        return _decode_bytes(data, None, limits)
    if scheme in ("http", "https"):
        if fetcher is None:
            from bgone.imaging.fetch import fetch_url

            data = fetch_url(stripped, max_bytes=limits.max_bytes)
        else:
            data = fetcher(stripped)
        return _decode_bytes(data, _url_stem(stripped), limits)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", stripped):
        raise ImageLoadError(f"unsupported URL scheme {scheme!r} in {_short(stripped)} (use http, https or data)")
    return _load_path(Path(text), limits)


def _url_stem(url: str) -> str | None:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    stem = PurePosixPath(path).stem
    return stem or None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_path(path: Path, limits: Limits) -> DecodedImage:
    max_bytes = limits.max_bytes
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
    return _decode_bytes(data, path.stem or None, limits)


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


def _decode_bytes(data: bytes, name: str | None, limits: Limits) -> DecodedImage:
    max_bytes, max_pixels = limits.max_bytes, limits.max_pixels
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
        return _decode_pil(image, name=name, limits=limits, owned=True)
    finally:
        image.close()


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return _short(text or type(exc).__name__, 160)


def _source_format(image: Image.Image) -> str | None:
    fmt = image.format
    # MPO is a JPEG with extra pictures appended (phone cameras); viewers show the first, and so do we.
    return "JPEG" if fmt == "MPO" else fmt


def _decode_pil(image: Image.Image, *, name: str | None, limits: Limits, owned: bool) -> DecodedImage:
    max_pixels, max_frames = limits.max_pixels, limits.max_frames
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
                durations.append(frame_duration(frame.info.get("duration")))
        else:
            if not owned and start != 0:
                image.seek(0)
            image.load()
            frames.append(_to_rgb(image, icc, transform_cache, force_alpha=False))
            durations.append(frame_duration(image.info.get("duration")))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"{label} is over the pixel limit of {max_pixels:,}: {exc}") from None
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(f"truncated or corrupt {label}: {_reason(exc)}") from None
    finally:
        if not owned and n_frames > 1:
            with contextlib.suppress(*_DECODE_ERRORS):
                image.seek(start)  # leave the caller's image where it was

    frames = unify_alpha(frames)
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


def _from_array(arr: np.ndarray, *, limits: Limits) -> DecodedImage:
    max_pixels = limits.max_pixels
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
    return DecodedImage(frames=unify_alpha([image]), durations=[DEFAULT_DURATION_MS])


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


