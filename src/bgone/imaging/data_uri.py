"""``data:`` URIs (RFC 2397): build one from bytes, read one back."""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse

from bgone.errors import ImageLoadError


def to_data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def parse_data_uri(uri: str) -> tuple[str, bytes]:
    """``data:[<mediatype>][;base64],<data>`` (RFC 2397) → (mime type, bytes).

    The mime type is lower-cased without parameters ("text/plain" when absent). Base64 may be standard
    or URL-safe, with or without padding, and may contain whitespace or percent-escapes.
    """
    text = uri.strip()
    if not text[:5].lower() == "data:":
        raise ImageLoadError(f"not a data URI: {text[:60]!r}")
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

