"""Signed upload URLs for fal's storage flow, as the JavaScript client ``@fal-ai/client`` uses it.

``POST /storage/upload/initiate`` answers an ``upload_url`` that takes the file's bytes in one ``PUT``
without any ``Authorization`` header, and the ``file_url`` the file will have. The URL's query is an
:class:`UploadTicket` (upload id, single or multipart, content type, file name, expiry) and its signature,
made with the server's signing keys (``service.signing``: every node of a deployment shares them, so a
URL issued by one API node is accepted by any other). A forged, altered or expired ticket is a
:class:`~bgone.errors.ForbiddenError` (403); so is a second upload to the same URL.

The file is announced before its bytes exist, so its storage key is fixed at initiation:
``uploads/{upload id}/{file name}`` (``Storage.put(..., key_id=upload id)``).

Multipart uploads (``initiate-multipart``) take ``PUT {upload_url}/{n}`` per part and
``POST {upload_url}/complete``. Each part is stored as it arrives (prefix ``uploadparts``, named after its
upload and number), and its ``etag`` is its storage key; ``complete`` checks every part belongs to the
upload, that the total is under the limit, joins them into the announced key and deletes them. Each node
remembers the parts it received (:class:`PendingUploads`) and deletes those of uploads whose URL expired
without being completed.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

from bgone.errors import ForbiddenError
from bgone.imaging.video_formats import is_video_name
from bgone.service.storage import sanitize_content_type, sanitize_file_name
from bgone.settings import ServerSettings

__all__ = [
    "MAX_PARTS",
    "PARTS_PREFIX",
    "UPLOAD_URL_SECONDS",
    "PendingUploads",
    "Signer",
    "UploadTicket",
    "part_name",
    "stable_file_name",
]

UPLOAD_URL_SECONDS = 3600  # how long an upload URL (and a multipart upload's parts) stays valid
EXPIRED_PARTS_GRACE_S = 300  # parts of an expired upload are deleted this long after its expiry
MAX_PARTS = 10_000
UPLOADS_PREFIX = "uploads"
PARTS_PREFIX = "uploadparts"
TOKEN_PURPOSE = "fal-upload-url"
DEFAULT_UPLOAD_NAME = "upload.bin"
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # base64url, as sign_token makes it


class Signer(Protocol):
    """What the upload URLs need of the server's signing keys (``service.signing``)."""

    def sign_token(self, purpose: str, message: bytes) -> str: ...

    def verify_token(self, purpose: str, message: bytes, token: str) -> bool: ...


def stable_file_name(name: str | None) -> str:
    """``name`` as storage keeps it: sanitised until sanitising changes nothing, so that the key announced
    at initiation is the key ``Storage.put`` makes of it."""
    value = sanitize_file_name(name, default=DEFAULT_UPLOAD_NAME)
    for _ in range(8):
        again = sanitize_file_name(value, default=DEFAULT_UPLOAD_NAME)
        if again == value:
            return value
        value = again
    return DEFAULT_UPLOAD_NAME


def part_name(upload_id: str, number: int) -> str:
    """The stored name of part ``number`` of an upload: ties a part's key (its etag) to its upload."""
    return f"{upload_id}.{number}.part"


@dataclass(frozen=True)
class UploadTicket:
    """What an upload URL allows: one upload of ``content_type`` named ``file_name`` under ``upload_id``,
    in one PUT or (``multipart``) in parts, until ``expires`` (epoch seconds)."""

    upload_id: str
    multipart: bool
    content_type: str
    file_name: str
    expires: int

    @classmethod
    def new(
        cls, content_type: str | None, file_name: str | None, *, multipart: bool, now: float | None = None
    ) -> UploadTicket:
        now = time.time() if now is None else now
        return cls(
            upload_id=secrets.token_hex(16),
            multipart=multipart,
            content_type=sanitize_content_type(content_type),
            file_name=stable_file_name(file_name),
            expires=int(now) + UPLOAD_URL_SECONDS,
        )

    @property
    def key(self) -> str:
        """The storage key the finished file gets (announced as ``file_url`` before it exists)."""
        return f"{UPLOADS_PREFIX}/{self.upload_id}/{self.file_name}"

    @property
    def is_video(self) -> bool:
        return self.content_type.lower().startswith("video/") or is_video_name(self.file_name)

    def limit(self, settings: ServerSettings) -> int:
        """The byte limit of the whole file: the video limit for a video, the image limit otherwise."""
        return settings.max_video_bytes if self.is_video else settings.max_image_bytes

    def message(self) -> bytes:
        mode = "multipart" if self.multipart else "single"
        fields = ["v1", self.upload_id, mode, self.expires, self.content_type, self.file_name]
        return json.dumps(fields, separators=(",", ":"), ensure_ascii=True).encode("ascii")

    def query(self, signer: Signer) -> str:
        """The upload URL's query string: the ticket and its signature."""
        params = {"expires": str(self.expires), "content_type": self.content_type, "file_name": self.file_name}
        params["signature"] = signer.sign_token(TOKEN_PURPOSE, self.message())
        return urlencode(params)

    @classmethod
    def verify(
        cls,
        upload_id: str,
        params: Mapping[str, str],
        signer: Signer,
        *,
        multipart: bool,
        now: float | None = None,
    ) -> UploadTicket:
        """The ticket an upload URL carries, if its signature holds and it has not expired; ForbiddenError
        (403) otherwise. ``multipart`` is what the route takes: a single-upload URL is no multipart URL."""
        try:
            expires = int(params.get("expires", ""))
        except ValueError:
            expires = -1
        ticket = cls(
            upload_id=upload_id,
            multipart=multipart,
            content_type=params.get("content_type", ""),
            file_name=params.get("file_name", ""),
            expires=expires,
        )
        signature = params.get("signature", "")
        if (
            not _UPLOAD_ID.fullmatch(upload_id)
            or expires < 0
            or not _SIGNATURE.fullmatch(signature)
            or not signer.verify_token(TOKEN_PURPOSE, ticket.message(), signature)
        ):
            kind = "multipart upload" if multipart else "upload"
            raise ForbiddenError(f"invalid {kind} URL: its signature does not match (ask for a new one)")
        if expires < (time.time() if now is None else now):
            raise ForbiddenError("upload URL expired: initiate the upload again")
        return ticket


@dataclass
class _Pending:
    expires: int
    parts: dict[int, tuple[str, int]] = field(default_factory=dict)  # number -> (storage key, size)


class PendingUploads:
    """The parts of unfinished multipart uploads that reached this node, so that an upload never completed
    leaves nothing behind once its URL has expired (:meth:`expired`)."""

    def __init__(self) -> None:
        self._uploads: dict[str, _Pending] = {}
        self._lock = threading.Lock()

    def add(self, ticket: UploadTicket, number: int, key: str, size: int) -> tuple[str | None, int]:
        """Record part ``number``: the key of the part it replaces (a retried part), if any, and the bytes
        this node has received for the upload so far."""
        with self._lock:
            pending = self._uploads.setdefault(ticket.upload_id, _Pending(ticket.expires))
            replaced = pending.parts.get(number)
            pending.parts[number] = (key, size)
            return (replaced[0] if replaced else None), sum(s for _, s in pending.parts.values())

    def forget(self, upload_id: str) -> list[str]:
        """Stop tracking an upload (completed or abandoned): the keys of the parts this node held."""
        with self._lock:
            pending = self._uploads.pop(upload_id, None)
        return [key for key, _ in pending.parts.values()] if pending else []

    def expired(self, now: float | None = None) -> list[str]:
        """Forget the uploads whose URL expired (with a grace period for parts still arriving): their
        parts' keys, for the caller to delete."""
        limit = (time.time() if now is None else now) - EXPIRED_PARTS_GRACE_S
        with self._lock:
            gone = [upload_id for upload_id, pending in self._uploads.items() if pending.expires < limit]
            keys = [key for upload_id in gone for key, _ in self._uploads.pop(upload_id).parts.values()]
        return keys

    def __len__(self) -> int:
        with self._lock:
            return len(self._uploads)
