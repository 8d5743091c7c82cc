"""A real bgone service (FastAPI app, SQLite queue, local storage, inference worker) on seeded weights."""

from __future__ import annotations

import base64
import contextlib
import io
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from bgone.settings import DEFAULT_MODEL_MAP, ServerSettings
from conftest import synthetic_photo


def png_data_uri(width: int = 120, height: int = 80, seed: int = 0) -> str:
    buf = io.BytesIO()
    synthetic_photo(width, height, seed).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def settings_for(tmp: Path, checkpoint: Path, **overrides: object) -> ServerSettings:
    every_model = {version: dict.fromkeys(names, str(checkpoint)) for version, names in DEFAULT_MODEL_MAP.items()}
    values: dict[str, object] = {
        "data_dir": tmp,
        "open_access": True,
        "model_map": every_model,
        "warm_model": None,
        "device": "cpu",
        "max_operating_side": 64,  # seeded Swin-T at 64x64: fast enough for many requests
        "allow_private_urls": True,
        "webhook_backoff": 0.05,
        "webhook_attempts": 4,
    }
    values.update(overrides)
    return ServerSettings(**values)


def wait_completed(client: TestClient, status_url: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        response = client.get(status_url, params={"logs": "1"})
        body = response.json()
        if body["status"] == "COMPLETED":
            assert response.status_code == 200
            return body
        assert response.status_code == 202
        time.sleep(0.05)
    raise AssertionError(f"not completed within {timeout}s: {body}")


@contextlib.contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """``app`` served by uvicorn on a loopback port (a thread of this process): its base URL, over real HTTP."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        assert thread.is_alive() and time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
