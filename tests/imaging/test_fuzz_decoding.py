"""Property-based fuzzing of image decoding: whatever the bytes, ``load_image`` either returns an
image or raises an ``InputError`` (which the API turns into a 4xx) - never anything else."""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bgone.errors import InputError
from bgone.imaging import load_image
from bgone.settings import Limits
from conftest import synthetic_photo

LIMITS = Limits(max_pixels=4_000_000, max_frames=20)


def _seed(fmt: str) -> bytes:
    buf = io.BytesIO()
    image = synthetic_photo(24, 16)
    if fmt == "GIF":
        frames = [image.convert("P"), synthetic_photo(24, 16, seed=1).convert("P")]
        frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    else:
        image.save(buf, fmt)
    return buf.getvalue()


SEEDS = {fmt: _seed(fmt) for fmt in ("PNG", "JPEG", "WEBP", "GIF", "TIFF", "BMP")}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode_or_input_error(data: bytes) -> None:
    try:
        decoded = load_image(data, limits=LIMITS)
    except InputError as exc:
        assert str(exc)  # a message a user can read
        return
    assert decoded.frames and all(frame.size[0] > 0 and frame.size[1] > 0 for frame in decoded.frames)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    decode_or_input_error(data)


@FUZZ
@given(
    fmt=st.sampled_from(sorted(SEEDS)),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_real_images(fmt: str, flips: list[tuple[int, int]], cut: int | None) -> None:
    blob = bytearray(SEEDS[fmt])
    for position, value in flips:
        blob[position % len(blob)] = value
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    decode_or_input_error(bytes(blob))


@FUZZ
@given(st.text(max_size=300))
def test_random_strings_as_sources(text: str) -> None:
    """Strings are paths, URLs or data URIs: none of them may escape as anything but an InputError."""
    if text.startswith(("http://", "https://")):
        return  # network fetching has its own tests (tests/test_fetch.py)
    for source in (text, "data:" + text, "data:image/png;base64," + text):
        with contextlib.suppress(InputError):
            load_image(source, limits=LIMITS)
