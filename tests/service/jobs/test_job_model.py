"""The values every JobStore shares: Priority from the ``X-Fal-Queue-Priority`` header."""

from __future__ import annotations

import pytest

from bgone.service.jobs import Priority


def test_priority_from_header() -> None:
    assert Priority.from_header(None) is Priority.NORMAL
    assert Priority.from_header("low") is Priority.LOW
    assert Priority.from_header(" Normal ") is Priority.NORMAL
    with pytest.raises(ValueError):
        Priority.from_header("urgent")
