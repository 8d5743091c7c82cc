"""`bgone serve` as a real subprocess on loopback, for tests and benchmarks that need one (crash
recovery, load): every fal model name mapped to one checkpoint, open access, CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bgone.settings import DEFAULT_MODEL_MAP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_serve(
    data_dir: Path,
    checkpoint: Path,
    log: Path,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
    warm_model: str = "none",
    ready_path: str = "/health",
    timeout: float = 180.0,
) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until ``ready_path`` answers 200; its output is appended to ``log``."""
    port = port or free_port()
    model_map = data_dir.parent / f"{data_dir.name}-models.json"
    model_map.write_text(
        json.dumps({version: dict.fromkeys(names, str(checkpoint)) for version, names in DEFAULT_MODEL_MAP.items()})
    )
    command = [
        sys.executable, "-m", "bgone.cli", "serve", "--open", "--port", str(port), "--data-dir", str(data_dir),
        "--model-map", str(model_map), "--warm-model", warm_model, "--device", "cpu",
    ]  # fmt: skip
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    process = subprocess.Popen(command, stdout=log.open("a"), stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}{ready_path}", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"bgone serve exited with {process.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"bgone serve did not answer {ready_path} within {timeout:.0f}s: {log.read_text()[-2000:]}")
