"""The server's signing keys: Ed25519 keys that sign webhooks as fal signs them, published as a JWKS
document, and the HMAC keys derived from them for short-lived signed URLs.

Where the keys come from:

- **Configured** (``BGONE_WEBHOOK_SIGNING_KEYS``, a comma list of base64url 32-byte private keys): the
  first signs, every one is published. Every node of a scaled-out deployment is given the same list, so
  a receiver verifies a webhook whichever node sent it, and a URL signed on one node is accepted on another.
- **Kept in the data dir** otherwise (``webhook-signing-keys.json``, mode 0600): generated on the first
  start, read by every process that shares the directory. ``bgone keys rotate`` publishes a new key at
  once, lets it sign once receivers have had time to fetch it (``publish_first``, since receivers cache
  the JWKS), and keeps the old key published for an ``overlap`` after that, so that webhooks it signed
  (retries included) still verify. A running server picks the change up without a restart (the file is
  re-read when it changes).

The signed webhook message is fal's: request id, user id, timestamp and the hex SHA-256 of the body, one
per line (:func:`webhook_message`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bgone.errors import SettingsError

KEYS_FILE = "webhook-signing-keys.json"
DEFAULT_PUBLISH_FIRST_S = 24 * 3600.0  # a new key is published this long before it signs
DEFAULT_OVERLAP_S = 24 * 3600.0  # and an old key stays published this long after it stopped signing
SEED_BYTES = 32


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def webhook_message(request_id: str, user_id: str, timestamp: str, body: bytes) -> bytes:
    """What a webhook's ``X-Fal-Webhook-Signature`` signs (fal's documented message)."""
    return "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode("utf-8")


def user_id_for_key(api_key: str) -> str:
    """A stable, non-secret id for an API key: the webhook user id of the requests it submits."""
    return hashlib.sha256(b"bgone webhook user\0" + api_key.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class SigningKey:
    """One Ed25519 key. It signs from ``signs_from`` (epoch seconds) until a newer key does, and is
    published until ``retire_at`` (None: for as long as it is kept)."""

    private: Ed25519PrivateKey
    created_at: float
    signs_from: float = 0.0
    retire_at: float | None = None

    @classmethod
    def generate(cls, *, signs_from: float | None = None) -> SigningKey:
        now = time.time()
        return cls(Ed25519PrivateKey.generate(), now, now if signs_from is None else signs_from)

    @classmethod
    def from_seed(
        cls, seed: str, *, created_at: float = 0.0, signs_from: float = 0.0, retire_at: float | None = None
    ) -> SigningKey:
        try:
            raw = b64url_decode(seed.strip())
        except ValueError:
            raw = b""
        if len(raw) != SEED_BYTES:
            raise SettingsError(
                "a webhook signing key must be 32 bytes in base64url (as `bgone keys export` prints it)"
            )
        return cls(Ed25519PrivateKey.from_private_bytes(raw), created_at, signs_from, retire_at)

    @property
    def seed(self) -> str:
        return b64url(self.private.private_bytes_raw())

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public JWK: the same key has the same id on every node."""
        canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": b64url(self.public_raw)}, separators=(",", ":"))
        return b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(self.public_raw),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def token_key(self, purpose: str) -> bytes:
        """An HMAC key for one purpose, derived from this key (never the signing key itself)."""
        return hmac.new(self.private.private_bytes_raw(), b"bgone token\0" + purpose.encode(), hashlib.sha256).digest()


def _load_file(path: Path) -> list[SigningKey]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return [
            SigningKey.from_seed(
                k["private_key"],
                created_at=float(k["created_at"]),
                signs_from=float(k.get("signs_from") or 0.0),
                retire_at=k.get("retire_at"),
            )
            for k in data["keys"]
        ]
    except (OSError, ValueError, KeyError, TypeError, SettingsError) as exc:
        raise SettingsError(f"cannot read the webhook signing keys in {path}: {exc}") from None


def _write_file(path: Path, keys: list[SigningKey], *, exclusive: bool = False) -> bool:
    """Write ``keys`` to ``path`` atomically (mode 0600). With ``exclusive``, only if there is no file yet:
    False when another process created it first."""
    body = json.dumps(
        {
            "keys": [
                {
                    "kid": k.kid,
                    "private_key": k.seed,
                    "created_at": k.created_at,
                    "signs_from": k.signs_from,
                    "retire_at": k.retire_at,
                }
                for k in keys
            ]
        },
        indent=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body + "\n")
    try:
        if exclusive:
            try:
                os.link(tmp, path)  # fails if another process won the race: theirs is kept
            except FileExistsError:
                return False
        else:
            os.replace(tmp, path)
            tmp = None  # type: ignore[assignment]
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return True


def unshared_keys_warning(settings: Any) -> str | None:
    """A warning for a node of a shared queue whose signing keys are its own: webhooks sent by a worker
    elsewhere would carry signatures this node's JWKS does not publish."""
    if settings.queue and not settings.webhook_signing_keys:
        return (
            f"webhooks are signed with keys kept in {Path(settings.data_dir) / KEYS_FILE}; with a shared queue, "
            "give every API node and worker the same keys (BGONE_WEBHOOK_SIGNING_KEYS=$(bgone keys export)) "
            "or receivers will not verify webhooks sent by another node"
        )
    return None


class SigningKeys:
    """The keys a server signs with and publishes. ``current`` signs; ``published`` are in the JWKS.
    Configured keys: the first signs. Kept keys: the newest whose ``signs_from`` has come."""

    def __init__(self, keys: list[SigningKey], *, path: Path | None = None) -> None:
        if not keys:
            raise SettingsError("no webhook signing key")
        self._keys = keys
        self._path = path
        self._stamp = self._file_stamp()
        self._lock = threading.Lock()

    @classmethod
    def configured(cls, seeds: list[str]) -> SigningKeys:
        return cls([SigningKey.from_seed(seed) for seed in seeds])

    @classmethod
    def in_dir(cls, data_dir: Path) -> SigningKeys:
        """The keys kept in ``data_dir``, generating the first one if there is none yet."""
        path = Path(data_dir) / KEYS_FILE
        if not path.exists():
            _write_file(path, [SigningKey.generate()], exclusive=True)
        return cls(_load_file(path), path=path)

    @classmethod
    def from_settings(cls, settings: Any) -> SigningKeys:
        if settings.webhook_signing_keys:
            return cls.configured(list(settings.webhook_signing_keys))
        return cls.in_dir(settings.data_dir)

    def _file_stamp(self) -> tuple[int, int] | None:
        if self._path is None:
            return None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _fresh(self) -> list[SigningKey]:
        """The keys, re-read if ``bgone keys rotate`` changed the file since."""
        stamp = self._file_stamp()
        if self._path is not None and stamp is not None and stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._keys, self._stamp = _load_file(self._path), stamp
        return self._keys

    @property
    def current(self) -> SigningKey:
        keys, now = self._fresh(), time.time()
        if self._path is None:
            return keys[0]
        ready = [k for k in keys if k.signs_from <= now]
        return max(ready, key=lambda k: k.signs_from) if ready else min(keys, key=lambda k: k.signs_from)

    @property
    def published(self) -> list[SigningKey]:
        now = time.time()
        return [k for k in self._fresh() if k.retire_at is None or k.retire_at > now]

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [k.jwk() for k in self.published]}

    def sign(self, message: bytes) -> str:
        """The hex Ed25519 signature of ``message`` by the current key."""
        return self.current.private.sign(message).hex()

    def sign_token(self, purpose: str, message: bytes) -> str:
        """A short base64url MAC of ``message`` for ``purpose`` (e.g. a signed upload URL)."""
        return b64url(hmac.new(self.current.token_key(purpose), message, hashlib.sha256).digest())

    def verify_token(self, purpose: str, message: bytes, token: str) -> bool:
        """Whether ``token`` is :meth:`sign_token`'s answer under any published key (so a rotation does
        not break a URL signed just before it)."""
        return any(
            hmac.compare_digest(b64url(hmac.new(k.token_key(purpose), message, hashlib.sha256).digest()), token)
            for k in self.published
        )

    def rotate(
        self, *, publish_first_s: float = DEFAULT_PUBLISH_FIRST_S, overlap_s: float = DEFAULT_OVERLAP_S
    ) -> SigningKey:
        """A new key, published now and signing after ``publish_first_s`` seconds; the keys it replaces stay
        published for ``overlap_s`` seconds after that. Only for keys kept in a data dir: configured keys
        are rotated by changing the configuration."""
        if self._path is None:
            raise SettingsError(
                "the signing keys come from BGONE_WEBHOOK_SIGNING_KEYS: rotate by putting a new key first in "
                "that list and keeping the old one after it during the overlap"
            )
        with self._lock:
            now = time.time()
            new = SigningKey.generate(signs_from=now + publish_first_s)
            retire = new.signs_from + overlap_s
            kept = [
                SigningKey(k.private, k.created_at, k.signs_from, min(k.retire_at or retire, retire))
                for k in _load_file(self._path)
                if k.retire_at is None or k.retire_at > now
            ]
            _write_file(self._path, [new, *kept])
            self._keys, self._stamp = [new, *kept], self._file_stamp()
        return new

    def export(self) -> str:
        """The BGONE_WEBHOOK_SIGNING_KEYS value that gives other nodes these keys (secret!): the key that
        signs now first, then the others that are published."""
        current = self.current
        return ",".join(k.seed for k in [current, *(k for k in self.published if k.kid != current.kid)])
