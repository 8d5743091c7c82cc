"""Signed webhooks, as fal signs them: a receiver holding nothing but the server's JWKS document verifies
them (the example receiver in examples/, written from fal's verification guide, unchanged but for its
JWKS URL); a changed body, request id, user id or timestamp fails; a key rotation keeps webhooks signed
before it verifiable during the overlap. Also the key store, the retry policy and the schema migration."""

from __future__ import annotations

import http.server
import importlib.util
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from service_helpers import png_data_uri

from bgone.errors import SettingsError
from bgone.service.jobs import Job, Outcome
from bgone.service.jobs.sqlite import SQLiteJobStore
from bgone.service.signing import KEYS_FILE, SigningKeys, unshared_keys_warning, webhook_message
from bgone.service.webhooks import WebhookSender
from bgone.settings import DEFAULT_MODEL_MAP, server_settings

RECEIVER = Path(__file__).resolve().parents[2] / "examples" / "webhook_receiver.py"
KEYS = {"alice": "alice-secret-key", "bob": "bob-secret-key"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def load_receiver(jwks_url: str) -> ModuleType:
    """A fresh copy of the example receiver (its own JWKS cache), pointed at ``jwks_url``."""
    os.environ["JWKS_URL"] = jwks_url
    try:
        spec = importlib.util.spec_from_file_location(f"webhook_receiver_{time.monotonic_ns()}", RECEIVER)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        del os.environ["JWKS_URL"]
    return module


# -- a live server and a recording webhook endpoint -----------------------------------------------


class Captured(http.server.BaseHTTPRequestHandler):
    deliveries: list[tuple[dict[str, str], bytes]] = []  # noqa: RUF012
    failures_left = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        type(self).deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(500)
        else:
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Captured)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


@pytest.fixture(autouse=True)
def _fresh_captures() -> None:
    Captured.deliveries = []
    Captured.failures_left = 0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lite_checkpoint: Path) -> Iterator[tuple[str, Path]]:
    """``bgone serve`` with two API keys, its data dir (where its signing keys are kept)."""
    tmp = tmp_path_factory.mktemp("signed")
    data, port = tmp / "data", free_port()
    model_map = tmp / "models.json"
    model_map.write_text(json.dumps({v: dict.fromkeys(n, str(lite_checkpoint)) for v, n in DEFAULT_MODEL_MAP.items()}))
    command = [sys.executable, "-m", "bgone.cli", "serve", "--port", str(port), "--data-dir", str(data)]
    command += ["--key", KEYS["alice"], "--key", KEYS["bob"], "--model-map", str(model_map), "--warm-model", "none"]
    command += ["--device", "cpu", "--max-operating-side", "64", "--allow-private-urls"]
    env = {**os.environ, "BGONE_WEBHOOK_BACKOFF": "0.05", "BGONE_DTYPE": "float32"}
    log = (tmp / "server.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, what="the server to start")
        yield base, data
    finally:
        process.terminate()
        process.wait(20)


def submit(base: str, hook: str, who: str = "alice", **input: object) -> str:
    response = httpx.post(
        f"{base}/queue/fal-ai/birefnet/v2",
        params={"fal_webhook": hook},
        json={"image_url": png_data_uri(40, 30), **input},
        headers={"authorization": f"Key {KEYS[who]}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()["request_id"]


def delivery_of(request_id: str) -> tuple[dict[str, str], bytes]:
    def found() -> tuple[dict[str, str], bytes] | None:
        return next((d for d in Captured.deliveries if d[0].get("x-fal-webhook-request-id") == request_id), None)

    return wait_until(found, what=f"the webhook of {request_id}")


# -- verification with nothing but the JWKS document ----------------------------------------------


def test_a_webhook_verifies_with_only_the_jwks_document(server: tuple[str, Path], hook: str) -> None:
    base, _ = server
    request_id = submit(base, hook)
    headers, body = delivery_of(request_id)
    assert headers["content-type"] == "application/json"
    assert abs(int(headers["x-fal-webhook-timestamp"]) - time.time()) < 60
    assert len(headers["x-fal-webhook-signature"]) == 128 and int(headers["x-fal-webhook-signature"], 16) >= 0
    assert json.loads(body)["request_id"] == request_id and json.loads(body)["status"] == "OK"

    jwks = httpx.get(f"{base}/.well-known/jwks.json").json()  # public: no key needed
    assert [(k["kty"], k["crv"]) for k in jwks["keys"]] == [("OKP", "Ed25519")]
    receiver = load_receiver(f"{base}/.well-known/jwks.json")
    assert receiver.verify(headers, body)


def test_a_changed_body_request_id_user_id_or_timestamp_fails(server: tuple[str, Path], hook: str) -> None:
    base, data = server
    headers, body = delivery_of(submit(base, hook))
    receiver = load_receiver(f"{base}/.well-known/jwks.json")
    assert receiver.verify(headers, body)
    assert not receiver.verify(headers, body.replace(b'"OK"', b'"ER"'))
    assert not receiver.verify(headers, body + b" ")
    for name in ("x-fal-webhook-request-id", "x-fal-webhook-user-id", "x-fal-webhook-timestamp"):
        changed = dict(headers)
        changed[name] = headers[name][:-1] + ("0" if headers[name][-1] != "0" else "1")
        assert not receiver.verify(changed, body), name
    for name in ("x-fal-webhook-signature", "x-fal-webhook-timestamp"):
        missing = {k: v for k, v in headers.items() if k != name}
        assert not receiver.verify(missing, body), name
    assert not receiver.verify({**headers, "x-fal-webhook-signature": "not hex"}, body)

    # A genuine signature over a stale timestamp (a replay) is refused too.
    keys = SigningKeys.in_dir(data)
    stale = str(int(time.time()) - 3600)
    message = webhook_message(headers["x-fal-webhook-request-id"], headers["x-fal-webhook-user-id"], stale, body)
    replayed = {**headers, "x-fal-webhook-timestamp": stale, "x-fal-webhook-signature": keys.sign(message)}
    assert not receiver.verify(replayed, body)
    fresh = str(int(time.time()))
    message = webhook_message(headers["x-fal-webhook-request-id"], headers["x-fal-webhook-user-id"], fresh, body)
    assert receiver.verify(
        {**headers, "x-fal-webhook-timestamp": fresh, "x-fal-webhook-signature": keys.sign(message)}, body
    )


def test_the_user_id_is_stable_per_api_key(server: tuple[str, Path], hook: str) -> None:
    base, _ = server
    first, second, other = (submit(base, hook, who) for who in ("alice", "alice", "bob"))
    ids = [delivery_of(r)[0]["x-fal-webhook-user-id"] for r in (first, second, other)]
    assert ids[0] == ids[1] != ids[2]
    assert all(len(i) == 32 and KEYS["alice"] not in i and KEYS["bob"] not in i for i in ids)


def test_an_error_webhook_is_signed_too(server: tuple[str, Path], hook: str) -> None:
    base, _ = server
    headers, body = delivery_of(submit(base, hook, image_url="data:image/png;base64,AAAA"))
    assert json.loads(body)["status"] == "ERROR"
    assert load_receiver(f"{base}/.well-known/jwks.json").verify(headers, body)


def test_retries_carry_fresh_valid_signatures(server: tuple[str, Path], hook: str) -> None:
    base, _ = server
    Captured.failures_left = 2
    request_id = submit(base, hook)
    wait_until(lambda: len([d for d in Captured.deliveries if d[0]["x-fal-webhook-request-id"] == request_id]) == 3)
    receiver = load_receiver(f"{base}/.well-known/jwks.json")
    tries = [d for d in Captured.deliveries if d[0]["x-fal-webhook-request-id"] == request_id]
    assert all(receiver.verify(headers, body) for headers, body in tries)
    assert len({body for _, body in tries}) == 1  # the same payload each time


def test_the_example_receiver_accepts_bgone_webhooks_and_refuses_forgeries(server: tuple[str, Path]) -> None:
    base, _ = server
    port = free_port()
    receiver = subprocess.Popen(
        [sys.executable, str(RECEIVER), str(port)],
        env={**os.environ, "JWKS_URL": f"{base}/.well-known/jwks.json"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until(lambda: _accepts_connections(port), what="the receiver")
        request_id = submit(base, url)
        assert receiver.stdout is not None
        assert receiver.stdout.readline().split() == ["verified", request_id, "OK"]
        forged = httpx.post(
            url,
            content=b'{"request_id": "x", "status": "OK"}',
            headers={
                "x-fal-webhook-request-id": "x",
                "x-fal-webhook-user-id": "u",
                "x-fal-webhook-timestamp": str(int(time.time())),
                "x-fal-webhook-signature": "ab" * 64,
            },
        )
        assert forged.status_code == 401
        assert receiver.stdout.readline().split() == ["rejected", "x"]
    finally:
        receiver.kill()
        receiver.wait(10)


def _accepts_connections(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# -- rotation -------------------------------------------------------------------------------------


def test_rotation_keeps_earlier_webhooks_verifiable_during_the_overlap(server: tuple[str, Path], hook: str) -> None:
    base, data = server
    jwks_url = f"{base}/.well-known/jwks.json"
    before = delivery_of(submit(base, hook))
    old_jwks = httpx.get(jwks_url).json()["keys"]

    def rotate(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "bgone.cli", "keys", "rotate", "--data-dir", str(data), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "new key" in done.stderr

    # Published first: the new key is in the JWKS at once, but the old one still signs.
    rotate("--publish-first", "1", "--overlap", "1")
    published = httpx.get(jwks_url).json()["keys"]
    assert len(published) == 2 and old_jwks[0] in published
    staged = delivery_of(submit(base, hook))
    assert load_receiver(jwks_url).verify(*staged)
    assert _verifies_with(old_jwks, staged)

    # Now a key that signs at once, the others published for ~4 s more (0.001 h).
    rotate("--now", "--overlap", "0.001")
    keys_now = httpx.get(jwks_url).json()["keys"]
    assert len(keys_now) == 3
    after = delivery_of(submit(base, hook))
    assert not _verifies_with(old_jwks, after)  # signed by the new key
    receiver = load_receiver(jwks_url)
    assert receiver.verify(*before) and receiver.verify(*staged) and receiver.verify(*after)

    # After the overlap only the new key is published: new webhooks verify, old ones no longer do.
    wait_until(lambda: len(httpx.get(jwks_url).json()["keys"]) == 1, timeout=30, what="the overlap to end")
    receiver = load_receiver(jwks_url)
    assert receiver.verify(*after) and not receiver.verify(*before)
    assert receiver.verify(*delivery_of(submit(base, hook)))


def _verifies_with(jwks_keys: list[dict], delivery: tuple[dict[str, str], bytes]) -> bool:
    from nacl.exceptions import BadSignatureError
    from nacl.signing import VerifyKey

    from bgone.service.signing import b64url_decode

    headers, body = delivery
    message = webhook_message(
        headers["x-fal-webhook-request-id"],
        headers["x-fal-webhook-user-id"],
        headers["x-fal-webhook-timestamp"],
        body,
    )
    for jwk in jwks_keys:
        try:
            VerifyKey(b64url_decode(jwk["x"])).verify(message, bytes.fromhex(headers["x-fal-webhook-signature"]))
            return True
        except BadSignatureError:
            continue
    return False


# -- the key store ------------------------------------------------------------------------------


def test_the_first_start_generates_one_private_key_that_every_process_shares(tmp_path: Path) -> None:
    results: list[SigningKeys] = []
    threads = [threading.Thread(target=lambda: results.append(SigningKeys.in_dir(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({keys.current.kid for keys in results}) == 1
    path = tmp_path / KEYS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [KEYS_FILE]  # no temporary files left
    assert SigningKeys.in_dir(tmp_path).jwks() == results[0].jwks()


def test_configured_keys_are_shared_and_the_first_signs(tmp_path: Path) -> None:
    kept = SigningKeys.in_dir(tmp_path / "a")
    kept.rotate(publish_first_s=0, overlap_s=3600)
    exported = kept.export()
    settings = server_settings(data_dir=tmp_path / "b", webhook_signing_keys=exported, open_access=True)
    configured = SigningKeys.from_settings(settings)
    assert configured.current.kid == kept.current.kid
    assert configured.jwks() == {"keys": sorted(kept.jwks()["keys"], key=lambda k: k["kid"] != kept.current.kid)}
    assert not (tmp_path / "b" / KEYS_FILE).exists()
    with pytest.raises(SettingsError, match="rotate by putting a new key first"):
        configured.rotate()
    with pytest.raises(SettingsError, match="32 bytes in base64url"):
        SigningKeys.configured(["not-a-key"])


def test_signed_tokens_survive_a_rotation_and_refuse_changes(tmp_path: Path) -> None:
    keys = SigningKeys.in_dir(tmp_path)
    token = keys.sign_token("upload", b"id-1|1700000000")
    assert keys.verify_token("upload", b"id-1|1700000000", token)
    assert not keys.verify_token("upload", b"id-2|1700000000", token)
    assert not keys.verify_token("other purpose", b"id-1|1700000000", token)
    keys.rotate(publish_first_s=0, overlap_s=3600)
    assert keys.verify_token("upload", b"id-1|1700000000", token)  # the old key is still published
    assert keys.sign_token("upload", b"id-1|1700000000") != token


def test_a_shared_queue_without_configured_keys_warns(tmp_path: Path) -> None:
    base = {"data_dir": tmp_path, "open_access": True}
    assert unshared_keys_warning(server_settings(**base)) is None
    warning = unshared_keys_warning(server_settings(**base, queue="redis://127.0.0.1:6379/0"))
    assert warning and "BGONE_WEBHOOK_SIGNING_KEYS" in warning and "bgone keys export" in warning
    seed = SigningKeys.in_dir(tmp_path).export()
    assert unshared_keys_warning(server_settings(**base, queue="redis://x", webhook_signing_keys=seed)) is None


# -- delivery policy ------------------------------------------------------------------------------


def test_the_default_policy_is_ten_tries_over_about_two_hours(tmp_path: Path) -> None:
    settings = server_settings(data_dir=tmp_path, open_access=True)
    sender = WebhookSender.from_settings(None, settings)
    gaps = [sender.delay(n) for n in range(1, sender.attempts)]
    assert sender.attempts == 10
    assert gaps == sorted(gaps) and gaps[0] == 15
    assert 1.8 * 3600 <= sum(gaps) <= 2.3 * 3600, sum(gaps)
    sender.close()


def test_after_a_restart_delivery_continues_from_the_try_it_reached(tmp_path: Path, hook: str) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.db")
    job = store.submit(Job.new(endpoint="fal-ai/birefnet/v2", app="fal-ai/birefnet", payload={}, webhook_url=hook))
    store.claim("w", limit=1)
    store.complete(job.request_id, Outcome(200, {"image": None}))
    for _ in range(7):  # seven tries failed before the restart
        store.record_webhook(job.request_id, delivered=False, error="HTTP 500")
    Captured.failures_left = 100
    sender = WebhookSender(store, SigningKeys.in_dir(tmp_path), attempts=10, backoff=0.01, allow_private=True)
    sender.resume_pending()
    wait_until(lambda: store.get(job.request_id).webhook_attempts == 10, what="the last tries")
    time.sleep(0.3)
    assert len(Captured.deliveries) == 3  # tries 8, 9 and 10, not ten more
    assert store.pending_webhooks(max_attempts=10) == []
    sender.close()
    store.close()


def test_a_database_from_before_user_ids_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "bgone.db"
    store = SQLiteJobStore(path)
    old = store.submit(Job.new(endpoint="fal-ai/birefnet/v2", app="fal-ai/birefnet", payload={"input": 1}))
    store.close()
    with sqlite3.connect(path) as conn:  # the schema as version 1 wrote it
        conn.execute("ALTER TABLE jobs DROP COLUMN user_id")
        conn.execute("PRAGMA user_version = 1")
    store = SQLiteJobStore(path)
    assert store.get(old.request_id).payload == {"input": 1} and store.get(old.request_id).user_id is None
    new = store.submit(Job.new(endpoint="fal-ai/birefnet/v2", app="fal-ai/birefnet", payload={}, user_id="u1"))
    assert store.get(new.request_id).user_id == "u1"
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2


def test_a_configured_user_id_and_the_open_mode_default(make_client, hook: str) -> None:
    for settings, expected in (({"webhook_user_id": "studio-42"}, "studio-42"), ({}, "anonymous")):
        client = make_client(**settings)
        request_id = client.post(
            "/queue/fal-ai/birefnet/v2", params={"fal_webhook": hook}, json={"image_url": png_data_uri(40, 30)}
        ).json()["request_id"]
        assert delivery_of(request_id)[0]["x-fal-webhook-user-id"] == expected
        jwks = client.get("/.well-known/jwks.json")
        assert jwks.headers["cache-control"] == "public, max-age=300" and len(jwks.json()["keys"]) == 1
