"""Blob storage for request outputs, behind the ``Storage`` interface."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILE_NAME,
    Storage,
    StoredFile,
    sanitize_content_type,
    sanitize_file_name,
)
from .local import LocalStorage

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_FILE_NAME",
    "LocalStorage",
    "Storage",
    "StoredFile",
    "open_storage",
    "sanitize_content_type",
    "sanitize_file_name",
]


def open_storage(url: str | None, data_dir: Path) -> Storage:
    """The storage for a ``--storage-url``-style setting.

    ``None`` or ``"file://"`` → ``LocalStorage(data_dir / "files")``; ``"file:///abs/path"`` →
    that directory. ``s3://…`` and any other scheme raise ValueError.
    """
    if url is None or url.strip() in ("", "file://"):
        return LocalStorage(Path(data_dir) / "files")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"invalid storage URL {url!r} (expected file:///absolute/path)")
        return LocalStorage(Path(unquote(parts.path)))
    if scheme in ("s3", "gs", "gcs", "r2", "azure", "az"):
        raise ValueError(f"storage backend {scheme!r} is not available yet; use file:///path or leave it unset")
    raise ValueError(f"unsupported storage URL {url!r} (expected file:///path)")
