"""A real bgone service (FastAPI app, SQLite queue, local storage, inference worker) on seeded weights."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

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
