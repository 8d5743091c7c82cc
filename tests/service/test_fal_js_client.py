"""The stock JavaScript client, ``@fal-ai/client`` (the exact version pinned in tests/js/package.json),
against a uvicorn-served bgone with an API key, configured as a web app configures it: ``proxyUrl`` set
to bgone's ``/api/fal/proxy``. One node process runs every scenario (tests/js/fal_client_scenarios.mjs):
subscribe with Blob/File inputs uploaded through fal's storage flow (polling and streaming status, logs,
queue updates), stream, run, the queue by hand, cancel, a 422 as the client's ValidationError, the video
endpoint, a refused target, a wrong key, and fal.storage.upload of a small file and of one just over the
client's 90 MiB multipart threshold.

Needs ``node`` and ``npm ci --prefix tests/js``; skipped without them unless BGONE_REQUIRE_JS_TESTS is set
(CI sets it: there a missing client is a failure)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from service_helpers import live_server, settings_for

from bgone.service.app import create_app
from conftest import synthetic_photo
from video_clips import write_clip

JS = Path(__file__).resolve().parents[1] / "js"
SCRIPT = JS / "fal_client_scenarios.mjs"
KEY = "js-test-key"
MIB = 1024 * 1024


def node_or_skip() -> str:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed"
    elif not (JS / "node_modules" / "@fal-ai" / "client" / "package.json").is_file():
        missing = "tests/js/node_modules is missing: run `npm ci --prefix tests/js`"
    if missing is None:
        return str(node)
    if os.environ.get("BGONE_REQUIRE_JS_TESTS"):
        pytest.fail(f"BGONE_REQUIRE_JS_TESTS is set but {missing}")
    pytest.skip(missing)


def pinned_version() -> str:
    wanted = json.loads((JS / "package.json").read_text())["dependencies"]["@fal-ai/client"]
    installed = json.loads((JS / "node_modules" / "@fal-ai" / "client" / "package.json").read_text())["version"]
    assert installed == wanted, f"tests/js/node_modules has @fal-ai/client {installed}, package.json pins {wanted}"
    return installed


def image_of(output: dict, width: int, height: int, base: str) -> None:
    image = output["image"]
    assert (image["width"], image["height"], image["content_type"]) == (width, height, "image/png"), image
    assert image["url"].startswith(f"{base}/files/outputs/"), image["url"]


def test_stock_js_client_through_the_proxy(tmp_path: Path, lite_checkpoint: Path) -> None:
    node = node_or_skip()
    version = pinned_version()
    photo = tmp_path / "photo.png"
    synthetic_photo(60, 40).save(photo)
    clip = write_clip(tmp_path / "clip.mp4", size=(64, 48), frames=5)
    settings = settings_for(tmp_path / "data", lite_checkpoint, open_access=False, api_keys=[KEY])
    with live_server(create_app(settings)) as base:
        env = {**os.environ, "BGONE_URL": base, "BGONE_KEY": KEY, "BGONE_PHOTO": str(photo), "BGONE_CLIP": str(clip)}
        proc = subprocess.run(
            [node, str(SCRIPT)], env=env, cwd=JS, capture_output=True, text=True, timeout=300, check=False
        )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")), None)
    assert proc.returncode == 0 and line, (
        f"@fal-ai/client {version} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    report = json.loads(line[len("REPORT ") :])

    # subscribe with a Blob: uploaded, queued, polled with logs, finished.
    sub = report["subscribe"]
    image_of(sub["data"], 60, 40, base)
    assert sub["data"]["mask_image"]["width"] == 60
    assert sub["requestId"] == sub["enqueued"] and len(sub["requestId"]) >= 16
    assert sub["statuses"][-1] == "COMPLETED" and set(sub["statuses"]) <= {"IN_QUEUE", "IN_PROGRESS", "COMPLETED"}
    assert any(m.startswith("Decoded PNG") for m in sub["logs"]), sub["logs"]
    streaming = report["subscribeStreaming"]
    image_of(streaming["data"], 60, 40, base)
    assert streaming["statuses"][-1] == "COMPLETED" and any(m.startswith("Decoded PNG") for m in streaming["logs"])

    # stream: the output as a server-sent event; a 422 rejects stream.done() with a ValidationError.
    stream = report["stream"]
    assert len(stream["events"]) == 1 and stream["done"] == stream["events"][0] and stream["requestId"]
    image_of(stream["done"], 60, 40, base)
    assert stream["done"]["mask_image"]["height"] == 40
    assert stream["error"]["isValidationError"] and stream["error"]["status"] == 422

    run = report["run"]
    image_of(run["data"], 60, 40, base)
    assert run["requestId"] and run["data"].get("mask_image") is None

    queue = report["queue"]
    request_id = queue["submitted"]["request_id"]
    assert queue["submitted"]["status"] == "IN_QUEUE" and queue["first"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    assert queue["completed"]["status"] == "COMPLETED" and queue["completed"]["request_id"] == request_id
    assert queue["withLogs"]["logs"] and queue["completed"]["logs"] is None
    assert queue["result"]["requestId"] == request_id
    image_of(queue["result"]["data"], 60, 40, base)

    cancel = report["cancel"]
    assert cancel["final"] == "COMPLETED" and cancel["aheadDone"] == 6
    assert cancel["resultError"]["isApiError"] and cancel["resultError"]["status"] == 499, cancel
    assert cancel["again"]["status"] == 400 and cancel["again"]["body"] == {"status": "ALREADY_COMPLETED"}

    error = report["validation"]["error"]
    assert error["name"] == "ValidationError" and error["isValidationError"] and error["status"] == 422
    assert error["modelErrors"] and error["modelErrors"][0]["loc"] == ["body", "model"], error
    assert error["requestId"]

    video = report["video"]["data"]
    assert video["video"]["num_frames"] == 5 and video["video"]["url"].startswith(f"{base}/files/outputs/")
    assert video["mask_video"]["url"].startswith(f"{base}/files/outputs/")
    assert any(m.startswith("Processed 5/5 frames") for m in report["video"]["logs"]), report["video"]["logs"]

    refused = report["refused"]["error"]
    assert refused["isApiError"] and refused["status"] == 400
    assert refused["body"]["error_type"] == "invalid_proxy_target"
    assert "POST https://fal.run/fal-ai/flux/dev is not served here" in refused["body"]["detail"]
    wrong = report["wrongKey"]["error"]
    assert wrong["status"] == 401 and wrong["body"]["error_type"] == "unauthorized"

    upload = report["upload"]
    assert upload["same"] and upload["url"].startswith(f"{base}/files/uploads/")

    # Multipart, as the client really sends it: initiate-multipart through the proxy, ten 10 MiB parts
    # to {upload_url}/{n} and a complete, those without a key.
    multipart = report["multipart"]
    assert multipart["same"] and multipart["size"] == 90 * MIB + 1
    steps = multipart["requests"]
    assert steps[0]["path"] == "/api/fal/proxy" and steps[0]["authorization"]
    assert steps[0]["target"] == "https://rest.fal.ai/storage/upload/initiate-multipart?storage_type=fal-cdn-v3"
    upload_path = steps[1]["path"].rsplit("/", 1)[0]
    assert [(s["method"], s["path"]) for s in steps[1:]] == [
        *(("PUT", f"{upload_path}/{n}") for n in range(1, 11)),
        ("POST", f"{upload_path}/complete"),
    ]
    assert not any(s["authorization"] or s["target"] for s in steps[1:])
    assert multipart["ms"] < 30_000, multipart["ms"]

    # Every API call went to the proxy with its key and the fal URL it meant; only the upload URLs were
    # called directly, without a key.
    for request in report["sent"]:
        if request["target"] is not None:
            assert request["path"] == "/api/fal/proxy", request
            assert request["authorization"] in (f"Key {KEY}", "Key not-the-key"), request
        else:
            assert request["path"].startswith("/storage/upload/") and request["authorization"] is None, request
    targets = {(r["method"], r["target"]) for r in report["sent"] if r["target"]}
    queue_url = "https://queue.fal.run/fal-ai/birefnet"
    assert {
        ("POST", "https://rest.fal.ai/storage/upload/initiate?storage_type=fal-cdn-v3"),
        ("POST", f"{queue_url}/v2"),
        ("POST", f"{queue_url}/v2/video"),
        ("POST", "https://fal.run/fal-ai/birefnet/v2/stream"),
        ("POST", "https://fal.run/fal-ai/birefnet"),
        ("POST", "https://fal.run/fal-ai/flux/dev"),
        ("GET", f"{queue_url}/requests/{request_id}/status?logs=0"),
        ("GET", f"{queue_url}/requests/{request_id}/status?logs=1"),
        ("GET", f"{queue_url}/requests/{request_id}"),
        ("GET", f"{queue_url}/requests/{streaming['requestId']}/status/stream?logs=1"),
    } <= targets
    assert any(method == "PUT" and target.endswith("/cancel") for method, target in targets)
