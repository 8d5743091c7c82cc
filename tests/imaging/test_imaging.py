"""bgone.imaging: every input kind, every format, modes, colour management, animation, limits, encoding."""

from __future__ import annotations

import base64
import io
import struct
import time
import urllib.parse
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageSequence, features

from bgone.errors import FileDownloadError, ImageLoadError, ImageTooLargeError, InputError
from bgone.imaging import (
    EXTENSIONS,
    MIME_TYPES,
    DecodedImage,
    composite,
    encode_image,
    extension_for,
    load_image,
    mime_for,
    parse_color,
    parse_data_uri,
    to_data_uri,
)
from bgone.imaging import decode as imaging
from bgone.settings import Limits

HAS_AVIF = features.check("avif")

# ----------------------------------------------------------------------------------------------------------
# helpers


def gradient(size: tuple[int, int] = (48, 32)) -> Image.Image:
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None].repeat(w, 1)
    rgb = np.stack([x, y, 255 - x], axis=-1).round().astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def cutout(size: tuple[int, int] = (48, 32)) -> Image.Image:
    """Left half transparent, right half opaque red."""
    im = Image.new("RGBA", size, (255, 0, 0, 255))
    im.paste((0, 0, 255, 0), (0, 0, size[0] // 2, size[1]))
    return im


def encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_bytes(size: tuple[int, int] = (8, 6)) -> bytes:
    return encode(gradient(size), "PNG")


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _desc(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 12 + b"\0" * 67


def icc_profile(device_class: bytes, color_space: bytes, pcs: bytes, tags: dict[bytes, bytes]) -> bytes:
    """A minimal ICC v2 profile: just enough for LittleCMS to build a transform."""
    tags = {b"desc": _desc("bgone test profile"), b"wtpt": _xyz(0.9642, 1.0, 0.8249), **tags}
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    entries, blobs = b"", b""
    for sig, blob in tags.items():
        blob += b"\0" * (-len(blob) % 4)
        entries += sig + struct.pack(">II", offset + len(blobs), len(blob))
        blobs += blob
    size = 128 + table_size + len(blobs)
    header = (
        struct.pack(">I", size)
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + device_class
        + color_space
        + pcs
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + _s15(0.9642)
        + _s15(1.0)
        + _s15(0.8249)
    )
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + entries + blobs


def swapped_rgb_profile() -> bytes:
    """An RGB matrix profile whose red primary is sRGB's blue and vice versa (gamma 2.2)."""
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256))
    return icc_profile(
        b"mntr",
        b"RGB ",
        b"XYZ ",
        {
            b"rXYZ": _xyz(0.1431, 0.0606, 0.7141),  # sRGB blue (D50)
            b"gXYZ": _xyz(0.3851, 0.7169, 0.0971),
            b"bXYZ": _xyz(0.4361, 0.2225, 0.0139),  # sRGB red (D50)
            b"rTRC": curve,
            b"gTRC": curve,
            b"bTRC": curve,
        },
    )


def red_cmyk_profile() -> bytes:
    """A CMYK profile (lut8, PCS Lab) that maps every CMYK value to Lab red (53, 80, 67)."""
    identity = bytes(range(256))
    lab_red = bytes([round(53 * 255 / 100), 80 + 128, 67 + 128])
    lut = (
        b"mft1\0\0\0\0"
        + bytes([4, 3, 2, 0])
        + b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
        + identity * 4
        + lab_red * 2**4
        + identity * 3
    )
    return icc_profile(b"prtr", b"CMYK", b"Lab ", {b"A2B0": lut})


def png_with_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR claims width x height (CRC fixed up)."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def animated_gif(n: int = 3, durations: list[int] | None = None, loop: int = 0) -> bytes:
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]
    frames = [Image.new("RGB", (20, 10), colors[i % len(colors)]) for i in range(n)]
    # Distinct content in each frame, so that Pillow does not merge identical ones.
    for i, frame in enumerate(frames):
        frame.paste((i * 40 % 256, 0, 0), (i, 0, i + 1, 1))
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=durations or [100] * n, loop=loop)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------
# input kinds


def test_path_str_and_pathlike(tmp_path: Path) -> None:
    path = tmp_path / "holiday photo.png"
    path.write_bytes(png_bytes())
    for source in (path, str(path)):
        decoded = load_image(source)
        assert decoded.name == "holiday photo"
        assert decoded.source_format == "PNG"
        assert decoded.size == (8, 6)
        assert decoded.frames[0].mode == "RGB"
        assert not decoded.is_animated and not decoded.has_alpha
        assert decoded.durations == [100] and decoded.loop == 0


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"no such file: x\.png"):
        load_image("x.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like(kind: type) -> None:
    decoded = load_image(kind(png_bytes()))
    assert decoded.size == (8, 6) and decoded.name is None


def test_file_like(tmp_path: Path) -> None:
    assert load_image(io.BytesIO(png_bytes())).size == (8, 6)
    path = tmp_path / "cat.png"
    path.write_bytes(png_bytes())
    with path.open("rb") as fh:
        assert load_image(fh).name == "cat"
    with path.open("r", encoding="latin-1") as text_fh, pytest.raises(ImageLoadError, match="binary mode"):
        load_image(text_fh)


def test_pil_image_is_copied_not_mutated() -> None:
    original = gradient()
    decoded = load_image(original)
    assert decoded.frames[0] is not original
    assert decoded.frames[0].tobytes() == original.tobytes()
    decoded.frames[0].paste((0, 0, 0), (0, 0, 4, 4))
    assert original.getpixel((0, 0)) != (0, 0, 0) or original.getpixel((1, 1)) != (0, 0, 0)


def test_pil_animated_image_keeps_position() -> None:
    image = Image.open(io.BytesIO(animated_gif(3)))
    image.seek(1)
    decoded = load_image(image)
    assert len(decoded.frames) == 3
    assert image.tell() == 1


def test_pil_modes() -> None:
    assert load_image(Image.new("L", (4, 4), 7)).frames[0].getpixel((0, 0)) == (7, 7, 7)
    assert load_image(Image.new("1", (4, 4), 1)).frames[0].getpixel((0, 0)) == (255, 255, 255)
    rgba = load_image(Image.new("RGBa", (4, 4), (10, 20, 30, 128)))
    assert rgba.frames[0].mode == "RGBA" and rgba.has_alpha
    la = load_image(Image.new("LA", (4, 4), (9, 100)))
    assert la.frames[0].mode == "RGBA" and la.frames[0].getpixel((0, 0)) == (9, 9, 9, 100)
    assert load_image(Image.new("LA", (4, 4), (9, 255))).frames[0].mode == "RGB"  # opaque alpha dropped
    assert load_image(Image.new("RGBA", (4, 4), (1, 2, 3, 255))).frames[0].mode == "RGB"
    assert load_image(Image.new("CMYK", (4, 4), (0, 0, 0, 0))).frames[0].getpixel((0, 0)) == (255, 255, 255)


def test_numpy_arrays() -> None:
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[..., 0] = 200
    decoded = load_image(rgb)
    assert decoded.size == (7, 5) and decoded.frames[0].getpixel((0, 0)) == (200, 0, 0)
    assert decoded.source_format is None and decoded.name is None

    grey = np.full((5, 7), 60, np.uint8)
    assert load_image(grey).frames[0].getpixel((3, 3)) == (60, 60, 60)
    assert load_image(grey[..., None]).frames[0].mode == "RGB"

    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., 3] = 128
    out = load_image(rgba)
    assert out.frames[0].mode == "RGBA" and out.has_alpha
    rgba[..., 3] = 255
    assert load_image(rgba).frames[0].mode == "RGB"

    wide = np.array([[0, 257 * 128, 65535]], np.uint16)
    assert list(np.asarray(load_image(wide).frames[0])[0, :, 0]) == [0, 128, 255]

    floats = np.array([[0.0, 0.5, 1.0, 2.0, np.nan]], np.float32)
    assert list(np.asarray(load_image(floats).frames[0])[0, :, 0]) == [0, 128, 255, 255, 0]

    assert load_image(np.ones((2, 2), bool)).frames[0].getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.full((2, 2, 3), 9, np.int64)).frames[0].getpixel((0, 0)) == (9, 9, 9)


def test_numpy_bad_arrays() -> None:
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ImageLoadError, match="shape"):
        load_image(np.zeros((2,), np.uint8))
    with pytest.raises(ImageLoadError, match=r"0\.\.255"):
        load_image(np.full((2, 2), 1000, np.int32))
    with pytest.raises(ImageLoadError, match="dtype"):
        load_image(np.zeros((2, 2), np.complex64))
    with pytest.raises(ImageTooLargeError):
        load_image(np.zeros((100, 100), np.uint8), limits=Limits(max_pixels=100))


def test_data_uri_base64_and_percent() -> None:
    data = png_bytes()
    assert load_image(to_data_uri(data, "image/png")).size == (8, 6)
    percent = "data:image/png," + urllib.parse.quote_from_bytes(data)
    assert load_image(percent).size == (8, 6)
    urlsafe = "data:image/png;base64," + base64.urlsafe_b64encode(data).decode().rstrip("=")
    assert load_image(urlsafe).size == (8, 6)
    encoded = base64.b64encode(data).decode()
    wrapped = "data:image/png;base64," + "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    assert parse_data_uri(wrapped) == ("image/png", data)


def test_parse_data_uri() -> None:
    assert parse_data_uri("data:,A%20b") == ("text/plain", b"A b")
    assert parse_data_uri("data:Image/PNG;name=x;base64,AAEC") == ("image/png", b"\x00\x01\x02")
    assert parse_data_uri(to_data_uri(b"\xff\x00", "image/webp")) == ("image/webp", b"\xff\x00")


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://x/y.png", "not a data URI"),
        ("data:image/png;base64", "no ','"),
        ("data:image/png;base64,!!!notbase64***", "invalid base64"),
        ("data:image/png;base64,QUJD=RA==", "invalid base64"),
    ],
)
def test_bad_data_uris(uri: str, message: str) -> None:
    with pytest.raises(ImageLoadError, match=message):
        parse_data_uri(uri)


def test_data_uri_that_is_not_an_image() -> None:
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image("data:text/plain,hello")


def test_url_via_fetcher() -> None:
    seen: list[str] = []

    def fetcher(url: str) -> bytes:
        seen.append(url)
        return png_bytes()

    decoded = load_image("https://cdn.example/a/My%20Cat.png?x=1", fetcher=fetcher)
    assert seen == ["https://cdn.example/a/My%20Cat.png?x=1"]
    assert decoded.name == "My Cat" and decoded.size == (8, 6)


def test_url_default_fetcher_refuses_private_address() -> None:
    with pytest.raises(FileDownloadError, match="loopback"):
        load_image("http://127.0.0.1:9/x.png")


def test_unsupported_sources() -> None:
    with pytest.raises(ImageLoadError, match="unsupported URL scheme 'ftp'"):
        load_image("ftp://example.com/x.png")
    with pytest.raises(ImageLoadError, match="unsupported image source"):
        load_image(42)


# ----------------------------------------------------------------------------------------------------------
# formats

FORMATS = [
    ("JPEG", {"quality": 95}, 6.0),
    ("PNG", {}, 0.0),
    ("WEBP", {"lossless": True}, 0.0),
    ("GIF", {}, 12.0),
    ("TIFF", {}, 0.0),
    ("BMP", {}, 0.0),
    pytest.param("AVIF", {"quality": 90}, 8.0, marks=pytest.mark.skipif(not HAS_AVIF, reason="no AVIF in Pillow")),
]


@pytest.mark.parametrize(("fmt", "options", "tolerance"), FORMATS)
def test_format_round_trip(fmt: str, options: dict, tolerance: float) -> None:
    original = gradient()
    decoded = load_image(encode(original, fmt, **options))
    assert decoded.source_format == fmt
    assert decoded.size == original.size
    assert decoded.frames[0].mode == "RGB"
    assert mean_abs_diff(decoded.frames[0], original) <= tolerance


@pytest.mark.parametrize(
    "fmt",
    [
        "PNG",
        "WEBP",
        "TIFF",
        pytest.param("AVIF", marks=pytest.mark.skipif(not HAS_AVIF, reason="no AVIF in Pillow")),
    ],
)
def test_alpha_round_trip(fmt: str) -> None:
    decoded = load_image(encode(cutout(), fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    assert decoded.frames[0].mode == "RGBA" and decoded.has_alpha
    assert decoded.frames[0].getpixel((2, 2))[3] == 0
    assert decoded.frames[0].getpixel((40, 2))[3] == 255


def test_heic_with_pillow_heif() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    pillow_heif.from_pillow(gradient()).save(buf, quality=90)
    decoded = load_image(buf.getvalue())
    assert decoded.source_format == "HEIF"
    assert decoded.size == (48, 32)
    assert mean_abs_diff(decoded.frames[0], gradient()) < 10


def test_mpo_counts_as_jpeg_first_picture() -> None:
    buf = io.BytesIO()
    gradient().save(buf, "MPO", save_all=True, append_images=[Image.new("RGB", (48, 32))])
    decoded = load_image(buf.getvalue())
    assert decoded.source_format == "JPEG" and not decoded.is_animated
    assert mean_abs_diff(decoded.frames[0], gradient()) < 6


def test_exif_orientation_applied() -> None:
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    decoded = load_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.size == (20, 40)
    top, bottom = decoded.frames[0].getpixel((10, 5)), decoded.frames[0].getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_cmyk_jpeg_without_profile() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    decoded = load_image(encode(cmyk, "JPEG", quality=95))
    assert decoded.source_format == "JPEG" and decoded.frames[0].mode == "RGB"
    r, g, b = decoded.frames[0].getpixel((8, 8))
    assert r > 230 and g < 30 and b < 30


def test_cmyk_jpeg_with_profile_uses_the_profile() -> None:
    # Grey ink, but the embedded profile maps every ink mix (except paper white, which LittleCMS pins to
    # white) to red: only colour management gives red; a naive conversion gives grey.
    cmyk = Image.new("CMYK", (16, 16), (0, 0, 0, 128))
    decoded = load_image(encode(cmyk, "JPEG", quality=95, icc_profile=red_cmyk_profile()))
    assert decoded.frames[0].mode == "RGB"
    r, g, b = decoded.frames[0].getpixel((8, 8))
    assert r > 90 and g < 40 and b < 40, (r, g, b)


def test_srgb_profile_is_a_no_op() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    decoded = load_image(encode(gradient(), "PNG", icc_profile=srgb))
    assert mean_abs_diff(decoded.frames[0], gradient()) <= 1.0


def test_rgb_profile_converted_to_srgb() -> None:
    red = Image.new("RGB", (8, 8), (255, 0, 0))
    decoded = load_image(encode(red, "PNG", icc_profile=swapped_rgb_profile()))
    r, g, b = decoded.frames[0].getpixel((4, 4))
    assert b > 200 and r < 60, (r, g, b)


def test_rgba_profile_keeps_alpha() -> None:
    im = cutout()
    decoded = load_image(encode(im, "PNG", icc_profile=swapped_rgb_profile()))
    frame = decoded.frames[0]
    assert frame.mode == "RGBA"
    assert frame.getpixel((2, 2))[3] == 0
    r, _, b, a = frame.getpixel((40, 2))
    assert a == 255 and b > 200 and r < 60


def test_broken_profile_is_ignored() -> None:
    decoded = load_image(encode(gradient(), "PNG", icc_profile=b"definitely not ICC"))
    assert mean_abs_diff(decoded.frames[0], gradient()) == 0


def test_16_bit_png_scaled_not_clipped() -> None:
    arr = np.array([[0, 257, 257 * 128, 65535]], np.uint16)
    im = Image.fromarray(arr)
    assert im.mode.startswith("I;16")
    decoded = load_image(encode(im, "PNG"))
    assert decoded.frames[0].mode == "RGB"
    assert list(np.asarray(decoded.frames[0])[0, :, 0]) == [0, 1, 128, 255]


def test_32_bit_integer_mode() -> None:
    im = Image.fromarray(np.array([[0, 65535]], np.int32), "I")
    assert list(np.asarray(load_image(im).frames[0])[0, :, 0]) == [0, 255]


def test_palette_with_transparency() -> None:
    im = Image.new("P", (10, 10), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (0, 0, 5, 10))
    decoded = load_image(encode(im, "PNG", transparency=1))
    assert decoded.frames[0].mode == "RGBA" and decoded.has_alpha
    assert decoded.frames[0].getpixel((7, 5)) == (255, 0, 0, 255)
    assert decoded.frames[0].getpixel((2, 5))[3] == 0
    plain = load_image(encode(im, "PNG"))
    assert plain.frames[0].mode == "RGB" and plain.frames[0].getpixel((2, 5)) == (0, 255, 0)


def test_la_png() -> None:
    im = Image.new("LA", (6, 6), (200, 255))
    im.putpixel((0, 0), (10, 0))
    decoded = load_image(encode(im, "PNG"))
    assert decoded.frames[0].mode == "RGBA"
    assert decoded.frames[0].getpixel((3, 3)) == (200, 200, 200, 255)
    assert decoded.frames[0].getpixel((0, 0))[3] == 0


# ----------------------------------------------------------------------------------------------------------
# animation


def test_animated_gif_frames_durations_loop() -> None:
    decoded = load_image(animated_gif(3, durations=[50, 120, 300], loop=2))
    assert decoded.is_animated and len(decoded.frames) == 3
    assert decoded.durations == [50, 120, 300]
    assert decoded.loop == 2
    assert decoded.source_format == "GIF"
    assert {f.mode for f in decoded.frames} == {"RGB"}  # nothing transparent: alpha dropped on all frames
    assert [f.getpixel((10, 5)) for f in decoded.frames] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_animated_gif_frames_are_composited() -> None:
    # Second frame only redraws a small rectangle (Pillow writes a delta); the decoded frame must be whole.
    base = Image.new("RGB", (20, 20), (0, 0, 255))
    second = base.copy()
    second.paste((255, 255, 0), (5, 5, 10, 10))
    buf = io.BytesIO()
    base.save(buf, "GIF", save_all=True, append_images=[second], duration=[100, 100], disposal=1)
    decoded = load_image(buf.getvalue())
    assert decoded.frames[1].getpixel((1, 1)) == (0, 0, 255)
    assert decoded.frames[1].getpixel((7, 7)) == (255, 255, 0)


def test_gif_without_durations_defaults_to_100() -> None:
    frames = [Image.new("RGB", (4, 4), color) for color in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    decoded = load_image(buf.getvalue())
    assert decoded.durations == [100, 100]


@pytest.mark.parametrize("fmt", ["gif", "webp", "png"])
def test_encode_animation_round_trip(fmt: str) -> None:
    frames = [cutout(), cutout().rotate(90), cutout().transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    data = encode_image(frames, fmt, durations=[40, 80, 160], loop=3)
    decoded = load_image(data)
    assert decoded.source_format == fmt.upper()
    assert len(decoded.frames) == 3
    assert decoded.durations == [40, 80, 160]
    assert decoded.loop == 3
    assert decoded.has_alpha and {f.mode for f in decoded.frames} == {"RGBA"}
    for original, frame in zip(frames, decoded.frames, strict=True):
        expected = np.asarray(original)[..., 3] >= 128
        assert ((np.asarray(frame)[..., 3] >= 128) == expected).mean() > 0.99
    assert decoded.frames[0].getpixel((2, 2))[3] == 0
    assert decoded.frames[2].getpixel((2, 2))[:1] + decoded.frames[2].getpixel((2, 2))[3:] == (255, 255)


def test_animated_webp_with_unset_alpha_flag_keeps_transparency() -> None:
    # libwebp leaves the VP8X alpha flag unset when its cropped sub-frames are opaque.
    frames = [cutout(), cutout().rotate(180)]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=[100, 100], quality=90)
    decoded = load_image(buf.getvalue())
    assert decoded.has_alpha
    assert decoded.frames[0].getpixel((2, 2))[3] == 0
    assert decoded.frames[1].getpixel((40, 2))[3] == 0


# ----------------------------------------------------------------------------------------------------------
# limits and broken input


def test_frame_limit() -> None:
    with pytest.raises(ImageTooLargeError, match=r"5 frames, over the limit of 3"):
        load_image(animated_gif(5), limits=Limits(max_frames=3))
    assert len(load_image(animated_gif(3), limits=Limits(max_frames=3)).frames) == 3


def test_pixel_limit_from_header_is_fast() -> None:
    bomb = png_with_size(100_000, 100_000)
    started = time.monotonic()
    with pytest.raises(ImageTooLargeError):
        load_image(bomb)
    with pytest.raises(ImageTooLargeError, match="over the limit of 40,000,000 pixels"):
        load_image(png_with_size(10_000, 5_000))  # under Pillow's own bomb limit, over ours
    assert time.monotonic() - started < 1.0
    with pytest.raises(ImageTooLargeError, match=r"48x32 = 1,536 pixels, over the limit of 1,000"):
        load_image(encode(gradient(), "PNG"), limits=Limits(max_pixels=1000))


@pytest.mark.parametrize("options", [{"lossless": True}, {"quality": 80}, {"save_all": True, "duration": [100, 100]}])
def test_webp_pixel_limit_before_open(options: dict) -> None:
    data = encode(
        gradient((40, 30)),
        "WEBP",
        **({"append_images": [gradient((40, 30)).rotate(180)]} if "save_all" in options else {}),
        **options,
    )
    assert imaging._webp_canvas_size(data) == (40, 30)
    with pytest.raises(ImageTooLargeError, match=r"WEBP is 40x30 = 1,200 pixels, over the limit of 1,000"):
        load_image(data, limits=Limits(max_pixels=1000))


def test_byte_limit(tmp_path: Path) -> None:
    data = png_bytes((64, 64))
    limit = len(data) - 1
    with pytest.raises(ImageTooLargeError, match="bytes"):
        load_image(data, limits=Limits(max_bytes=limit))
    with pytest.raises(ImageTooLargeError):
        load_image(io.BytesIO(data), limits=Limits(max_bytes=limit))
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match=r"big\.png"):
        load_image(path, limits=Limits(max_bytes=limit))
    with pytest.raises(ImageTooLargeError):
        load_image(to_data_uri(data, "image/png"), limits=Limits(max_bytes=limit))
    assert load_image(data, limits=Limits(max_bytes=len(data))).size == (64, 64)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP"])
def test_truncated(fmt: str) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(ImageLoadError, match=f"truncated or corrupt {fmt}"):
        load_image(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match=f"truncated or corrupt {fmt}"):
        load_image(data[:20])


def test_empty_and_garbage() -> None:
    with pytest.raises(ImageLoadError, match="empty file"):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(b"this is not an image at all, just some text" * 3)
    with pytest.raises(ImageLoadError, match="not a recognised image format"):
        load_image(np.random.default_rng(1).integers(0, 255, 1000, dtype=np.uint8).tobytes())


def test_errors_are_input_errors_with_one_line_messages() -> None:
    for source in (b"", b"garbage!" * 10, "nope.png", png_with_size(100_000, 100_000)):
        with pytest.raises(InputError) as info:
            load_image(source)
        assert "\n" not in str(info.value)


def test_avif_unavailable_message(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64
    monkeypatch.setattr(imaging.features, "check", lambda feature: False)
    with pytest.raises(ImageLoadError, match="AVIF is not supported by this Pillow build"):
        load_image(data)


def test_heic_without_pillow_heif_message(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    monkeypatch.setattr(imaging, "_ensure_heif_plugin", lambda: False)
    with pytest.raises(ImageLoadError, match="pip install pillow-heif"):
        load_image(data)


def test_percent_encoded_data_uri_limit() -> None:
    data = png_bytes((32, 32))
    percent = "data:image/png," + urllib.parse.quote_from_bytes(data)
    assert len(percent) > len(data) * 4 / 3  # would trip a base64-only size estimate
    assert load_image(percent, limits=Limits(max_bytes=len(data))).size == (32, 32)


# ----------------------------------------------------------------------------------------------------------
# encoding


def test_encode_png_keeps_alpha_and_jpeg_flattens_on_white() -> None:
    png = load_image(encode_image([cutout()], "png"))
    assert png.frames[0].getpixel((2, 2))[3] == 0 and png.source_format == "PNG"
    jpeg = load_image(encode_image([cutout()], "jpg"))
    assert jpeg.source_format == "JPEG" and jpeg.frames[0].mode == "RGB"
    assert min(jpeg.frames[0].getpixel((2, 2))) > 245  # white where it was transparent
    r, g, b = jpeg.frames[0].getpixel((40, 16))
    assert r > 240 and g < 20 and b < 20


def test_encode_jpeg_of_animation_uses_first_frame() -> None:
    data = encode_image([cutout(), Image.new("RGB", (48, 32))], "jpeg", background=(0, 0, 0))
    decoded = load_image(data)
    assert not decoded.is_animated and max(decoded.frames[0].getpixel((2, 2))) < 10


def test_encode_with_background_colour_and_image() -> None:
    green = load_image(encode_image([cutout()], "png", background=(0, 255, 0)))
    assert green.frames[0].mode == "RGB" and green.frames[0].getpixel((2, 2)) == (0, 255, 0)
    clear = load_image(encode_image([cutout()], "png", background=(0, 0, 0, 0)))
    assert clear.has_alpha
    backdrop = Image.new("RGB", (10, 100), (0, 0, 255))
    framed = load_image(encode_image([cutout()], "webp", background=backdrop, quality=100))
    assert framed.frames[0].mode == "RGB" and framed.frames[0].getpixel((2, 2)) == (0, 0, 255)


def test_webp_quality_100_is_lossless() -> None:
    im = gradient().convert("RGBA")
    im.putalpha(200)
    decoded = load_image(encode_image([im], "webp", quality=100))
    assert np.array_equal(np.asarray(decoded.frames[0]), np.asarray(im))
    lossy = load_image(encode_image([im], "webp"))
    assert lossy.frames[0].getchannel("A").getextrema() == (200, 200)  # alpha stays exact when lossy


def test_gif_alpha_threshold() -> None:
    im = Image.new("RGBA", (4, 1), (255, 0, 0, 255))
    im.putpixel((0, 0), (255, 0, 0, 0))
    im.putpixel((1, 0), (255, 0, 0, 127))
    im.putpixel((2, 0), (255, 0, 0, 128))
    decoded = load_image(encode_image([im], "gif"))
    assert [decoded.frames[0].getpixel((x, 0))[3] for x in range(4)] == [0, 0, 255, 255]
    opaque = load_image(encode_image([gradient()], "gif"))
    assert opaque.frames[0].mode == "RGB" and mean_abs_diff(opaque.frames[0], gradient()) < 12


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "webp"])
def test_encode_greyscale_masks(fmt: str) -> None:
    mask = Image.fromarray(np.tile(np.arange(0, 256, 4, dtype=np.uint8), (8, 1)), "L")
    data = encode_image([mask, mask.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], fmt)
    if fmt == "png":
        assert Image.open(io.BytesIO(data)).mode == "L"
    decoded = load_image(data)
    assert decoded.frames[0].mode == "RGB"
    assert mean_abs_diff(decoded.frames[0].convert("L"), mask) < (3 if fmt in ("jpeg", "webp") else 0.5)


def test_encode_bad_format_and_empty() -> None:
    with pytest.raises(InputError, match="unsupported output format 'bmp'"):
        encode_image([gradient()], "bmp")
    with pytest.raises(ValueError):
        encode_image([], "png")


def test_mime_and_extension() -> None:
    assert mime_for("JPG") == "image/jpeg" and mime_for("webp") == "image/webp"
    assert extension_for("jpeg") == ".jpg" and extension_for(".PNG") == ".png"
    assert set(MIME_TYPES) == set(EXTENSIONS) == {"png", "webp", "gif", "jpeg"}


# ----------------------------------------------------------------------------------------------------------
# colours and compositing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#ff0000", (255, 0, 0)),
        ("#0f0", (0, 255, 0)),
        ("#00000080", (0, 0, 0, 128)),
        ("white", (255, 255, 255)),
        ("Black", (0, 0, 0)),
        ("transparent", (0, 0, 0, 0)),
        ("10, 20,30", (10, 20, 30)),
        ("10,20,30,40", (10, 20, 30, 40)),
        ("rgb(1, 2, 3)", (1, 2, 3)),
    ],
)
def test_parse_color(text: str, expected: tuple) -> None:
    assert parse_color(text) == expected


@pytest.mark.parametrize("text", ["", "nocolour", "#12", "300,0,0", "1,2", "#gggggg"])
def test_parse_color_rejects(text: str) -> None:
    with pytest.raises(InputError, match="invalid colour"):
        parse_color(text)


def test_composite() -> None:
    fg = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    out = composite(fg, (0, 0, 255))
    assert out.mode == "RGB"
    r, _, b = out.getpixel((0, 0))
    assert abs(r - 128) <= 1 and abs(b - 127) <= 1
    assert composite(fg, (0, 0, 0, 0)).mode == "RGBA"

    # Background image: resized to cover (centre crop), not stretched.
    backdrop = Image.new("RGB", (30, 10), (0, 255, 0))
    backdrop.paste((0, 0, 255), (0, 0, 10, 10))  # a blue left third, cropped away for a square
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    covered = composite(clear, backdrop)
    assert covered.size == (10, 10) and covered.getpixel((0, 5)) == (0, 255, 0)
    assert composite(Image.new("RGB", (3, 3), (9, 9, 9)), (0, 0, 0)).getpixel((1, 1)) == (9, 9, 9)


def test_decoded_image_properties() -> None:
    decoded = DecodedImage(frames=[Image.new("RGBA", (5, 3), (0, 0, 0, 255))])
    assert decoded.size == (5, 3) and not decoded.has_alpha and decoded.durations == [100]
    with pytest.raises(ValueError):
        DecodedImage(frames=[])


def test_frames_are_independent_of_the_source() -> None:
    decoded = load_image(animated_gif(3))
    assert len({id(f) for f in decoded.frames}) == 3
    image = Image.open(io.BytesIO(animated_gif(3)))
    assert sum(1 for _ in ImageSequence.Iterator(image)) == 3
