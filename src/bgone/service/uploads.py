"""Uploaded bytes, read under the image limit whatever carries them (a raw body, a multipart field):
refused as soon as they pass it, before they are all buffered."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bgone.errors import ImageTooLargeError, InputError


async def read_limited(chunks: AsyncIterator[bytes], limit: int, *, declared: int | None = None) -> bytes:
    """All of ``chunks``; ImageTooLargeError (413) past ``limit`` bytes (at once when the ``declared``
    size already is), InputError (400) when there is nothing."""
    if declared is not None and declared > limit:
        raise ImageTooLargeError(f"upload of {declared} bytes is over the {limit}-byte limit")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise ImageTooLargeError(f"upload is over the {limit}-byte limit")
        parts.append(chunk)
    if size == 0:
        raise InputError("empty upload: send the image's bytes (in the multipart field `file` for /api/remove)")
    return b"".join(parts)
