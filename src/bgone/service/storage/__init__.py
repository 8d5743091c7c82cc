"""Blob storage for request outputs, behind the ``Storage`` interface."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from bgone.service.storage.base import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_FILE_NAME,
    Storage,
    StoredFile,
    sanitize_content_type,
    sanitize_file_name,
)
from bgone.service.storage.local import LocalStorage

if TYPE_CHECKING:
    from bgone.service.storage.s3 import S3Storage

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_FILE_NAME",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StoredFile",
    "open_storage",
    "sanitize_content_type",
    "sanitize_file_name",
]


def __getattr__(name: str) -> Any:
    # S3Storage is imported on demand: boto3 is only needed when an s3:// URL is configured.
    if name == "S3Storage":
        from bgone.service.storage.s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_S3_OPTIONS = {"presign", "presign_seconds", "endpoint", "region", "create_bucket", "addressing"}


def _flag(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ValueError(f"invalid value {value!r} for storage URL option {name!r} (expected 1 or 0)")


def _open_s3(url: str, parts: Any) -> Storage:
    from bgone.service.storage.s3 import S3Storage

    if not parts.hostname or parts.username or parts.password or parts.port:
        raise ValueError(f"invalid storage URL {url!r} (expected s3://bucket[/prefix][?options])")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in _S3_OPTIONS:
            raise ValueError(f"unknown storage URL option {name!r} (known: {', '.join(sorted(_S3_OPTIONS))})")
        options[name] = value
    try:
        presign_seconds = int(options.get("presign_seconds", "3600"))
    except ValueError:
        raise ValueError(f"invalid presign_seconds in storage URL {url!r}") from None
    return S3Storage(
        parts.netloc,
        unquote(parts.path),
        endpoint_url=options.get("endpoint") or None,
        presign=_flag("presign", options.get("presign", "0")),
        presign_seconds=presign_seconds,
        create_bucket=_flag("create_bucket", options.get("create_bucket", "0")),
        region_name=options.get("region") or None,
        addressing_style=options.get("addressing") or None,
    )


def open_storage(url: str | None, data_dir: Path) -> Storage:
    """The storage for a ``--storage-url``-style setting.

    ``None`` or ``"file://"`` → ``LocalStorage(data_dir / "files")``; ``"file:///abs/path"`` →
    that directory. ``s3://bucket[/key/prefix]`` → ``S3Storage`` (credentials, region and endpoint
    from the usual ``AWS_*`` variables), with optional query options ``presign=1``,
    ``presign_seconds=3600``, ``endpoint=http://host:9000``, ``region=…``, ``create_bucket=1`` and
    ``addressing=path|virtual|auto``. Any other scheme raises ValueError.
    """
    if url is None or url.strip() in ("", "file://"):
        return LocalStorage(Path(data_dir) / "files")
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"invalid storage URL {url!r} (expected file:///absolute/path)")
        return LocalStorage(Path(unquote(parts.path)))
    if scheme == "s3":
        return _open_s3(url, parts)
    if scheme in ("gs", "gcs", "r2", "azure", "az"):
        raise ValueError(
            f"storage backend {scheme!r} is not available yet; use s3://bucket?endpoint=… (R2 and GCS speak S3) "
            "or file:///path"
        )
    raise ValueError(f"unsupported storage URL {url!r} (expected file:///path or s3://bucket/prefix)")
