"""A complete webhook receiver that verifies bgone's (or fal's) webhook signatures.

Run it with the JWKS URL of the server that sends the webhooks:

    pip install httpx pynacl
    JWKS_URL=https://bgone.example.com/.well-known/jwks.json python webhook_receiver.py 8080

and submit with ``?fal_webhook=http://<this host>:8080/``. For fal itself, JWKS_URL is fal's documented
JWKS address: nothing else changes. Each verified webhook is printed as one line:
``verified <request_id> <status>``; anything else gets a 401 and a ``rejected`` line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

JWKS_URL = os.environ["JWKS_URL"]
JWKS_CACHE_SECONDS = 24 * 3600
MAX_CLOCK_SKEW_SECONDS = 300

_jwks_cache: tuple[float, list[bytes]] = (0.0, [])


def public_keys(*, refresh: bool = False) -> list[bytes]:
    """The raw Ed25519 public keys of the JWKS, cached for a day (refetched on demand)."""
    global _jwks_cache
    fetched_at, keys = _jwks_cache
    if refresh and time.time() - fetched_at < 60:  # forged webhooks must not make us fetch over and over
        return keys
    if refresh or not keys or time.time() - fetched_at > JWKS_CACHE_SECONDS:
        document = httpx.get(JWKS_URL, timeout=10).raise_for_status().json()
        keys = [
            base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            for jwk in document.get("keys", [])
            if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519"
        ]
        _jwks_cache = (time.time(), keys)
    return keys


def verify(headers: dict[str, str], body: bytes) -> bool:
    """Whether ``body`` came from the server: a fresh timestamp and an Ed25519 signature by one of its keys
    over request id, user id, timestamp and the body's SHA-256, one per line."""
    request_id = headers.get("x-fal-webhook-request-id")
    user_id = headers.get("x-fal-webhook-user-id")
    timestamp = headers.get("x-fal-webhook-timestamp")
    signature = headers.get("x-fal-webhook-signature")
    if not (request_id and user_id and timestamp and signature):
        return False
    try:
        if abs(time.time() - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
            return False
        signature_bytes = bytes.fromhex(signature)
    except ValueError:
        return False
    message = "\n".join([request_id, user_id, timestamp, hashlib.sha256(body).hexdigest()]).encode()
    for refresh in (False, True):  # a key published since the cache was filled: fetch once more
        for key in public_keys(refresh=refresh):
            try:
                VerifyKey(key).verify(message, signature_bytes)
                return True
            except BadSignatureError:
                continue
    return False


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        if not verify(headers, body):
            print(f"rejected {headers.get('x-fal-webhook-request-id')}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        payload = json.loads(body)
        print(f"verified {payload['request_id']} {payload['status']}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet: one line per webhook
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Receiver).serve_forever()
