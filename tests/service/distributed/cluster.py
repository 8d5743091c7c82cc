"""A whole bgone deployment on loopback: redis-server, moto's S3 server, API nodes and workers,
each a real process started the way an operator would start it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bgone.settings import DEFAULT_MODEL_MAP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Cluster:
    root: Path
    checkpoint: Path
    lease_seconds: float = 3.0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    api_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.redis_port = free_port()
        self.s3_port = free_port()
        self.model_map = self.root / "models.json"
        self.model_map.write_text(
            json.dumps({v: dict.fromkeys(names, str(self.checkpoint)) for v, names in DEFAULT_MODEL_MAP.items()})
        )
        self.env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    @property
    def queue_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0?lease_seconds={self.lease_seconds}"

    @property
    def storage_url(self) -> str:
        return f"s3://bgone-test/outputs?endpoint=http://127.0.0.1:{self.s3_port}&create_bucket=1"

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.root / f"{name}.log").open("w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.root)
        self.processes[name] = process
        return process

    def start_services(self) -> None:
        self.start_redis()
        self._spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)])
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{self.s3_port}/", timeout=1).status_code < 500, 30, "moto")

    def start_redis(self) -> None:
        """Redis with an append-only file in the cluster's folder, so a restart keeps the queue."""
        redis = shutil.which("redis-server")
        assert redis, "redis-server is not installed"
        (self.root / "redis").mkdir(exist_ok=True)
        port, folder = str(self.redis_port), str(self.root / "redis")
        command = [redis, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes", "--dir", folder]
        self._spawn("redis", command)
        wait_until(lambda: socket.create_connection(("127.0.0.1", self.redis_port), 1).close() is None, 20, "redis")

    def restart_redis(self, down_seconds: float = 1.0) -> None:
        self.kill("redis", signal.SIGTERM)  # a clean shutdown flushes the append-only file
        time.sleep(down_seconds)
        self.start_redis()

    def start_api(self, name: str, port: int | None = None) -> str:
        port = port or self.api_ports.get(name) or free_port()
        self.api_ports[name] = port
        self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "bgone.cli",
                "serve",
                "--role",
                "api",
                "--open",
                "--port",
                str(port),
                "--queue",
                self.queue_url,
                "--storage",
                self.storage_url,
                "--data-dir",
                str(self.root / name),
                "--model-map",
                str(self.model_map),
                "--warm-model",
                "none",
                "--allow-private-urls",
            ],
        )
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200, 60, name)
        return base

    def start_worker(self, name: str, operating_side: int = 64, threads: int | None = None) -> subprocess.Popen:
        if threads is not None:  # a share of the cores, so that workers do not fight over the same threads
            self.env["OMP_NUM_THREADS"] = str(threads)
        return self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "bgone.cli",
                "worker",
                "--queue",
                self.queue_url,
                "--storage",
                self.storage_url,
                "--data-dir",
                str(self.root / name),
                "--model-map",
                str(self.model_map),
                "--warm-model",
                "none",
                "--device",
                "cpu",
                "--max-operating-side",
                str(operating_side),
                "--batch-size",
                "4",
                "--allow-private-urls",
            ],
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(name)
        process.send_signal(sig)
        process.wait(30)

    def stop(self) -> None:
        for name in list(self.processes):
            process = self.processes.pop(name)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
