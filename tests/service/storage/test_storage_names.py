"""sanitize_file_name on its own: client-supplied names become one safe path segment (every backend
stores what it returns; storage_contract.py checks that through put)."""

from __future__ import annotations

import pytest
from storage_contract import FILE_NAMES

from bgone.service.storage import sanitize_file_name


@pytest.mark.parametrize(("raw", "expected"), FILE_NAMES)
def test_sanitize_file_name(raw: str | None, expected: str) -> None:
    assert sanitize_file_name(raw) == expected


def test_long_file_name_keeps_extension() -> None:
    name = sanitize_file_name("a" * 500 + ".png")
    assert name.endswith(".png") and len(name.encode()) <= 128
    multibyte = sanitize_file_name("é" * 300 + ".jpeg")
    assert multibyte.endswith(".jpeg") and len(multibyte.encode()) <= 128
    multibyte.encode().decode()  # not cut inside a character
