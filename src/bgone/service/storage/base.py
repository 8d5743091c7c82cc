"""The blob-storage interface for request outputs (and, later, uploads)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_FILE_NAME",
    "MAX_FILE_NAME_BYTES",
    "Storage",
    "StoredFile",
    "sanitize_content_type",
    "sanitize_file_name",
    "validate_key",
    "validate_key_id",
    "validate_prefix",
]

DEFAULT_FILE_NAME = "file"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Well under the usual 255-byte NAME_MAX, leaving room for temporary-file decorations.
MAX_FILE_NAME_BYTES = 128

# Characters that are unsafe or awkward in paths, URLs and Content-Disposition headers.
_UNSAFE_CHARS = re.compile(r'[<>:"|?*%#&;\'`$!{}\[\]^~=+,\s]')
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*(\s*;[ -~]*)?$")
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_KEY_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_KEY_LENGTH = 512
# Key segments never hold separators or control characters, and never start with "." (no "..", and
# the names of sidecar and temporary files stay out of reach).
_BAD_SEGMENT = re.compile(r"[\x00-\x1f\x7f\\:]")


@dataclass
class StoredFile:
    key: str  # e.g. "outputs/<32 hex>/image.png"
    file_name: str  # the sanitised name (the key's last segment)
    content_type: str
    size: int  # bytes


def sanitize_file_name(name: str | None, *, default: str = DEFAULT_FILE_NAME) -> str:
    """A safe single path segment from a client-supplied name: the last component of any path
    (``/`` or ``\\``), NFC-normalised, without control characters, leading dots (no ``..``, no
    hidden files) or URL/shell-unsafe characters (→ ``_``), cut to ``MAX_FILE_NAME_BYTES`` UTF-8
    bytes keeping the extension. Empty results become ``default``."""
    if not name:
        return default
    name = unicodedata.normalize("NFC", str(name))
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C"))
    name = _UNSAFE_CHARS.sub("_", name.strip()).lstrip(".").strip("_ ")
    if len(name.encode()) > MAX_FILE_NAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        if not dot or len(ext.encode()) > 16:
            stem, ext = name, ""
        budget = MAX_FILE_NAME_BYTES - len(ext.encode()) - (1 if ext else 0)
        stem = stem.encode()[:budget].decode(errors="ignore")
        name = f"{stem}.{ext}" if ext else stem
    return name or default


def sanitize_content_type(content_type: str | None) -> str:
    """``type/subtype[; params]`` in printable ASCII (no header injection), else the default."""
    value = (content_type or "").strip()
    return value if _CONTENT_TYPE.match(value) else DEFAULT_CONTENT_TYPE


def validate_key(key: str) -> str:
    """A storage key as every backend accepts it: relative, at most ``MAX_KEY_LENGTH`` characters, at
    least two non-empty segments, none starting with "." and none holding backslashes, colons or control
    characters. ValueError("invalid storage key") otherwise."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH or key.startswith("/"):
        raise ValueError("invalid storage key")
    segments = key.split("/")
    if len(segments) < 2 or any(not s or s.startswith(".") or _BAD_SEGMENT.search(s) for s in segments):
        raise ValueError("invalid storage key")
    return key


def valid_segment(segment: str) -> bool:
    """Whether ``segment`` may be one part of a key or of a backend's own prefix."""
    return bool(segment) and not segment.startswith(".") and not _BAD_SEGMENT.search(segment)


def validate_prefix(prefix: str) -> str:
    """Key prefixes are short fixed words chosen by the server ("outputs", "uploads")."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid storage prefix {prefix!r}")
    return prefix


def validate_key_id(key_id: str) -> str:
    """A caller-chosen unique segment of a key (``put(..., key_id=...)``): 32 lowercase hex characters,
    as random as the ones ``put`` draws itself."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ValueError("invalid storage key id")
    return key_id


@runtime_checkable
class Storage(Protocol):
    """Where request outputs live. Keys are ``<prefix>/<32 random hex>/<sanitised file name>``:
    unguessable (they end up in public URLs) and safe as relative paths. Every method given a key
    that is malformed or would escape the storage raises ``ValueError("invalid storage key")``."""

    def put(
        self, data: bytes, *, file_name: str, content_type: str, prefix: str = "outputs", key_id: str | None = None
    ) -> StoredFile:
        """Store ``data`` under a new unique key (atomically: readers never see a partial file).

        ``key_id`` (32 random lowercase hex, :func:`validate_key_id`) is the key's unique segment when the
        caller must announce the key before the bytes exist (fal's upload URLs); FileExistsError when a
        file was already stored with that ``prefix`` and ``key_id``."""
        ...

    def get(self, key: str) -> bytes:
        """The stored bytes; FileNotFoundError if there is no such file."""
        ...

    def path(self, key: str) -> Path | None:
        """A local file to serve directly (e.g. FileResponse); None if the file does not exist or
        the backend is remote (then use ``get``)."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a file is stored under ``key``."""
        ...

    def delete(self, keys: Iterable[str]) -> None:
        """Delete these files (missing ones are ignored). All keys are validated first."""
        ...

    def stat(self, key: str) -> StoredFile | None:
        """Name, content type and size of a stored file; None if absent."""
        ...

    def stored_before(self, prefix: str, before: float) -> list[str]:
        """The keys under ``prefix`` whose files were stored before ``before`` (epoch seconds): what a
        retention sweep deletes. Files still being written are not listed."""
        ...

    def url_for(self, key: str) -> str | None:
        """A URL clients can fetch the file from directly (e.g. a presigned S3 URL), or None when the
        service serves it itself under ``/files/{key}``."""
        ...
