"""``Storage`` on S3 or an S3-compatible object store (AWS S3, MinIO, Cloudflare R2, GCS interop).

Objects live at ``s3://<bucket>/<prefix>/<key>`` where ``key`` has exactly the LocalStorage format
(``<prefix>/<32 random hex>/<sanitised file name>``) and is validated by the same rules. The content
type is the object's ``Content-Type``; the sanitised and the original file name are kept as user
metadata (``x-amz-meta-file-name`` / ``x-amz-meta-original-file-name``, percent-encoded because
metadata travels as HTTP headers) and as ``Content-Disposition``, so presigned downloads get a
proper name too.

Credentials, region and endpoint come from boto3's usual sources (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, profiles, instance roles)
unless given explicitly. One boto3 client is created lazily and shared by all threads (boto3
clients are thread-safe; sessions are not, so the session is used only under a lock).
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import threading
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bgone import settings
from bgone.service.storage.base import (
    DEFAULT_CONTENT_TYPE,
    StoredFile,
    sanitize_content_type,
    sanitize_file_name,
    valid_segment,
    validate_key,
    validate_key_id,
    validate_prefix,
)

__all__ = ["S3Storage"]

log = logging.getLogger(__name__)

# DeleteObjects accepts at most 1000 keys per request.
_DELETE_BATCH = 1000
# S3 object keys are at most 1024 UTF-8 bytes; user metadata at most 2 KB in all.
_MAX_OBJECT_KEY_BYTES = 1024
_MAX_ORIGINAL_NAME_BYTES = 512
# What S3 reports for objects stored without a Content-Type.
_UNKNOWN_CONTENT_TYPES = {"", "binary/octet-stream"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_ADDRESSING_STYLES = {"auto", "path", "virtual"}


def _normalize_root_prefix(prefix: str) -> str:
    segments = [s for s in (prefix or "").split("/") if s]
    if not all(valid_segment(s) for s in segments):
        raise ValueError(f"invalid S3 key prefix {prefix!r}")
    return "/".join(segments)


def _content_disposition(name: str) -> str:
    # RFC 6266: an ASCII fallback plus the exact UTF-8 name. ``name`` is already sanitised (no
    # quotes, backslashes or control characters).
    fallback = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error") or {}
    code = str(error.get("Code") or "")
    if not code:
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        code = str(status or "")
    return code


class S3Storage:
    """``Storage`` in an S3 bucket, optionally under a key prefix inside it.

    ``presign=True`` makes ``url_for`` return presigned GET URLs valid for ``presign_seconds`` (the
    client downloads straight from the bucket); otherwise ``url_for`` returns None and the API node
    streams the object itself. ``create_bucket=True`` creates a missing bucket on first use.
    ``client`` injects a ready boto3 S3 client (then endpoint, region and addressing are its own).
    ``addressing_style`` defaults to ``"path"`` with a custom endpoint (MinIO and friends) and to
    boto3's ``"auto"`` for AWS itself.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        presign: bool = False,
        presign_seconds: int = 3600,
        client: Any = None,
        create_bucket: bool = False,
        region_name: str | None = None,
        addressing_style: str | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not bucket.strip() or "/" in bucket:
            raise ValueError(f"invalid S3 bucket name {bucket!r}")
        if not 1 <= int(presign_seconds) <= 7 * 24 * 3600:  # SigV4 presigned URLs last at most a week
            raise ValueError("presign_seconds must be between 1 and 604800")
        if addressing_style is not None and addressing_style not in _ADDRESSING_STYLES:
            raise ValueError(f"addressing_style must be one of {sorted(_ADDRESSING_STYLES)}")
        self.bucket = bucket.strip()
        self.prefix = _normalize_root_prefix(prefix)
        self.endpoint_url = endpoint_url or None
        self.presign = bool(presign)
        self.presign_seconds = int(presign_seconds)
        self.create_bucket = bool(create_bucket)
        self.region_name = region_name or None
        self.addressing_style = addressing_style
        self._client = client
        self._lock = threading.Lock()
        self._bucket_ready = not self.create_bucket

    def __repr__(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"S3Storage({where!r})"

    # -- client -------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The shared boto3 S3 client (created on first use; thread-safe to call from anywhere)."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
                client = self._client
        if not self._bucket_ready:
            self._ensure_bucket(client)
        return client

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config

        custom_endpoint = self.endpoint_url or settings.aws_endpoint_url()
        style = self.addressing_style or ("path" if custom_endpoint else "auto")
        options: dict[str, Any] = {
            "signature_version": "s3v4",
            "s3": {"addressing_style": style},
            "retries": {"max_attempts": 5, "mode": "standard"},
            "connect_timeout": 5,
            "read_timeout": 60,
            "max_pool_connections": 32,
            "tcp_keepalive": True,
        }
        try:
            # botocore >= 1.36 adds CRC checksums to every upload by default, which some
            # S3-compatible stores (GCS interop, older MinIO) reject; only send them when required.
            config = Config(
                **options, request_checksum_calculation="when_required", response_checksum_validation="when_required"
            )
        except TypeError:  # older botocore: never sent them anyway
            config = Config(**options)
        session = boto3.session.Session()
        return session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region_name, config=config)

    def _ensure_bucket(self, client: Any) -> None:
        from botocore.exceptions import ClientError

        with self._lock:
            if self._bucket_ready:
                return
            try:
                client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                kwargs: dict[str, Any] = {"Bucket": self.bucket}
                region = client.meta.region_name
                if region and region not in ("us-east-1", "aws-global"):
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
                try:
                    client.create_bucket(**kwargs)
                    log.info("created S3 bucket %s", self.bucket)
                except ClientError as create_exc:
                    if _error_code(create_exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise
            self._bucket_ready = True

    def _object_key(self, key: str) -> str:
        validate_key(key)
        full = f"{self.prefix}/{key}" if self.prefix else key
        if len(full.encode()) > _MAX_OBJECT_KEY_BYTES:
            raise ValueError("invalid storage key")
        return full

    # -- Storage ------------------------------------------------------------------------------

    def put(
        self, data: bytes, *, file_name: str, content_type: str, prefix: str = "outputs", key_id: str | None = None
    ) -> StoredFile:
        name = sanitize_file_name(file_name)
        ctype = sanitize_content_type(content_type)
        unique = uuid.uuid4().hex if key_id is None else validate_key_id(key_id)
        key = f"{validate_prefix(prefix)}/{unique}/{name}"
        object_key = self._object_key(key)
        if key_id is not None and self._used(object_key.rpartition("/")[0] + "/"):
            raise FileExistsError(key)
        original = str(file_name or "").encode()[:_MAX_ORIGINAL_NAME_BYTES].decode(errors="ignore")
        body = bytes(data)
        # A single PUT is atomic in S3: readers see the whole object or nothing.
        self.client.put_object(
            Bucket=self.bucket,
            Key=object_key,
            Body=body,
            ContentType=ctype,
            ContentDisposition=_content_disposition(name),
            Metadata={"file-name": quote(name, safe=""), "original-file-name": quote(original, safe="")},
        )
        return StoredFile(key=key, file_name=name, content_type=ctype, size=len(body))

    def _used(self, object_prefix: str) -> bool:
        """Whether any object lies under ``object_prefix`` (a caller-chosen key id already taken). Checked
        before the write: key ids are random, so this guards against reuse, not against a race."""
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=object_prefix, MaxKeys=1)
        return bool(listed.get("KeyCount") or listed.get("Contents"))

    def get(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        object_key = self._object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise FileNotFoundError(key) from exc
            raise
        with response["Body"] as body:
            return body.read()

    def path(self, key: str) -> Path | None:
        validate_key(key)
        return None  # remote: use get() or url_for()

    def exists(self, key: str) -> bool:
        return self.stat(key) is not None

    def delete(self, keys: Iterable[str]) -> None:
        from botocore.exceptions import ClientError

        object_keys = list(dict.fromkeys(self._object_key(k) for k in keys))  # validate all first
        if not object_keys:
            return
        client = self.client
        for start in range(0, len(object_keys), _DELETE_BATCH):
            batch = object_keys[start : start + _DELETE_BATCH]
            try:
                response = client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
                )
            except ClientError as exc:
                if _error_code(exc) not in ("NotImplemented", "MalformedXML", "InvalidArgument", "501"):
                    raise
                # No multi-object delete (e.g. GCS interop): one request per key.
                self._delete_one_by_one(batch)
                continue
            for error in response.get("Errors") or []:
                if error.get("Code") not in _MISSING_CODES:  # best effort, like LocalStorage
                    log.warning("could not delete s3://%s/%s: %s", self.bucket, error.get("Key"), error.get("Message"))

    def _delete_one_by_one(self, object_keys: list[str]) -> None:
        from botocore.exceptions import ClientError

        for object_key in object_keys:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=object_key)
            except ClientError as exc:
                if _error_code(exc) not in _MISSING_CODES:
                    log.warning("could not delete s3://%s/%s: %s", self.bucket, object_key, exc)

    def stat(self, key: str) -> StoredFile | None:
        from botocore.exceptions import ClientError

        object_key = self._object_key(key)
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return None
            raise
        file_name = key.rsplit("/", 1)[-1]
        ctype = str(head.get("ContentType") or "")
        if ctype in _UNKNOWN_CONTENT_TYPES:
            ctype = mimetypes.guess_type(file_name)[0] or DEFAULT_CONTENT_TYPE
        return StoredFile(key=key, file_name=file_name, content_type=ctype, size=int(head.get("ContentLength") or 0))

    def stored_before(self, prefix: str, before: float) -> list[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        listed = f"{root}{validate_prefix(prefix)}/"
        keys = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=listed):
            for item in page.get("Contents") or []:
                key = item["Key"][len(root) :]
                if item["LastModified"].timestamp() < before and key.count("/") == 2:
                    with contextlib.suppress(ValueError):  # objects put there by others are not ours
                        keys.append(validate_key(key))
        return keys

    # -- extras -------------------------------------------------------------------------------

    def url_for(self, key: str) -> str | None:
        """A presigned GET URL for ``key`` (valid ``presign_seconds``) when ``presign`` is on, else
        None (serve the bytes from ``get``). No request is made: the URL of a missing key 404s."""
        object_key = self._object_key(key)
        if not self.presign:
            return None
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": object_key}, ExpiresIn=self.presign_seconds
        )
