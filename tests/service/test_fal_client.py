"""The unmodified fal-client package from PyPI against `bgone serve`: over TLS with a self-signed
certificate (FAL_RUN_HOST / FAL_QUEUE_RUN_HOST / SSL_CERT_FILE), and over plain HTTP with the
documented URL override (which also makes `upload_file` work)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bgone.settings import DEFAULT_MODEL_MAP
from conftest import synthetic_photo
from video_clips import write_clip

pytest.importorskip("fal_client")
HERE = Path(__file__).parent


def self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, checkpoint: Path, tls: tuple[Path, Path] | None) -> Iterator[str]:
    port = free_port()
    model_map = tmp / "models.json"
    model_map.write_text(json.dumps({v: dict.fromkeys(names, str(checkpoint)) for v, names in DEFAULT_MODEL_MAP.items()}))
    command = [
        sys.executable,
        "-m",
        "bgone.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
        "--key",
        "test-key",
        "--model-map",
        str(model_map),
        "--warm-model",
        "none",
        "--device",
        "cpu",
        "--max-operating-side",
        "64",
    ]
    if tls:
        command += ["--ssl-certfile", str(tls[0]), "--ssl-keyfile", str(tls[1])]
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if (
                httpx.get(
                    f"{base}/health", verify=ssl.create_default_context(cafile=str(tls[0])) if tls else True, timeout=1
                ).status_code
                == 200
            ):
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        server.kill()
        raise AssertionError("server did not start:\n" + (tmp / "server.log").read_text())
    try:
        yield base
    finally:
        server.terminate()
        server.wait(20)


def run_client(mode: str, image: Path, env: dict[str, str], *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(HERE / "fal_client_script.py"), mode, str(image), *extra],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert line, f"client failed:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(line[len("REPORT ") :])


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    synthetic_photo(120, 80).save(path)
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.mp4", size=(64, 48), frames=5)


def check_video(report: dict, base: str) -> None:
    video = report["video"]
    assert video["video"]["content_type"] == "video/webm" and video["video"]["num_frames"] == 5
    assert video["mask_video"]["url"].startswith(f"{base}/files/outputs/")
    assert any(m.startswith("Processed 5/5 frames") for m in report["video_logs"]), report["video_logs"]


def check_common(report: dict, base: str) -> None:
    for key in ("run", "subscribe", "result", "module_result"):
        image = report[key]["image"]
        assert image["width"] == 120 and image["height"] == 80 and image["content_type"] == "image/png", key
        assert image["url"].startswith(f"{base}/files/outputs/"), image["url"]
    assert report["run"]["mask_image"]["width"] == 120
    assert "Completed" in report["subscribe_updates"]
    assert any(m.startswith("Decoded PNG") for m in report["subscribe_logs"])
    assert report["status"] in ("Queued", "InProgress", "Completed")
    assert report["module_status"] == "Completed"
    assert report["validation_error"]["status"] == 422
    assert report["validation_error"]["message"][0]["loc"] == ["body", "model"]
    assert report["bad_image"]["status"] == 422
    assert report["cancelled"]["status"] == 499 and report["ahead_done"] == 6


def test_stock_fal_client_over_tls(tmp_path: Path, lite_checkpoint: Path, photo: Path, clip: Path) -> None:
    cert, key = self_signed(tmp_path)
    for base in start_server(tmp_path, lite_checkpoint, (cert, key)):
        host = base.removeprefix("https://")
        env = {
            "FAL_KEY": "test-key",
            "FAL_RUN_HOST": host,
            "FAL_QUEUE_RUN_HOST": f"{host}/queue",
            "SSL_CERT_FILE": str(cert),
            "FAL_TEST_VIDEO": str(clip),
        }
        report = run_client("tls", photo, env)
        check_common(report, base)
        check_video(report, base)
        # The output files are really served, over the same TLS endpoint.
        response = httpx.get(report["run"]["image"]["url"], verify=ssl.create_default_context(cafile=str(cert)))
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"


def test_fal_client_over_plain_http_with_uploads(tmp_path: Path, lite_checkpoint: Path, photo: Path, clip: Path) -> None:
    for base in start_server(tmp_path, lite_checkpoint, None):
        report = run_client("http", photo, {"FAL_KEY": "test-key", "FAL_TEST_VIDEO": str(clip)}, base)
        check_common(report, base)
        check_video(report, base)
        assert report["video_upload_url"].startswith(f"{base}/files/uploads/") and report["video_upload_url"].endswith("/clip.mp4")
        assert report["video_uploaded"]["video"]["content_type"] == "video/mp4"  # the default output type
        assert report["upload_url"].startswith(f"{base}/files/uploads/") and report["upload_url"].endswith("/photo.png")
        assert report["run_uploaded"]["image"]["url"].startswith("data:image/png;base64,")


def test_wrong_key_is_refused(tmp_path: Path, lite_checkpoint: Path, photo: Path) -> None:
    for base in start_server(tmp_path, lite_checkpoint, None):
        response = httpx.post(
            f"{base}/fal-ai/birefnet/v2", json={"image_url": "x"}, headers={"authorization": "Key nope"}
        )
        assert response.status_code == 401 and response.headers["x-fal-request-id"]
