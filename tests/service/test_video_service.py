"""``fal-ai/birefnet/v2/video`` as clients meet it: sync and queue, every output type, masks, logs with
progress in frames, sync_mode, uploads, cancel within a batch, limits and broken files as 4xx with an
error_type, nothing stored for a failed request, a crash mid-video re-queued and finished, and the schema
in fal's field order. A real service on seeded weights at 64x64, clips of a few tiny frames."""

from __future__ import annotations

import base64
import signal
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
from service_helpers import wait_completed

from bgone.imaging.video import open_video
from served import free_port, start_serve
from video_clips import write_clip

QUEUE = "/queue/fal-ai/birefnet/v2/video"
STATUS = "/queue/fal-ai/birefnet/requests/{}/status"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "dance.mp4", size=(80, 48), frames=7, audio="aac")


def data_uri(path: Path, mime: str = "video/mp4") -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def fetch(client, url: str, tmp_path: Path, name: str) -> Path:
    response = client.get(urlparse(url).path)
    assert response.status_code == 200
    target = tmp_path / name
    target.write_bytes(response.content)
    return target


def stored_files(client) -> list[Path]:
    root = client.app.state.service.settings.data_dir / "files"
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_sync_default_is_mp4_with_the_clips_facts(client, clip: Path, tmp_path: Path) -> None:
    response = client.post("/fal-ai/birefnet/v2/video", json={"video_url": data_uri(clip)})
    assert response.status_code == 200, response.text
    video = response.json()["video"]
    assert video["content_type"] == "video/mp4" and video["file_name"] == "video-output.mp4"
    assert (video["width"], video["height"], video["num_frames"]) == (80, 48, 7) and video["fps"] == 25
    assert "mask_video" not in response.json() or response.json()["mask_video"] is None
    with open_video(fetch(client, video["url"], tmp_path, "out.mp4")) as reader:
        assert len(list(reader.frames())) == 7 and reader.info.has_audio


@pytest.mark.parametrize(("output_type", "fmt", "mime"), [("VP9 (.webm)", "webm", "video/webm"), ("PRORES4444 (.mov)", "mov", "video/quicktime"), ("GIF (.gif)", "gif", "image/gif")])
def test_queue_with_mask_and_progress_logs(client, clip: Path, tmp_path: Path, output_type: str, fmt: str, mime: str) -> None:
    upload = client.post("/files/upload", content=clip.read_bytes(), headers={"content-type": "video/mp4", "x-fal-file-name": "dance.mp4"})
    body = {"video_url": upload.json()["access_url"], "video_output_type": output_type, "output_mask": True}
    submitted = client.post(QUEUE, json=body).json()
    assert submitted["status_url"].endswith(STATUS.format(submitted["request_id"]))  # under the app root, as on fal
    final = wait_completed(client, submitted["status_url"].replace("http://testserver", ""))
    messages = [entry["message"] for entry in final["logs"]]
    assert any(m.startswith("Processed 7/7 frames") for m in messages), messages
    assert final["metrics"]["frames"] == 7
    result = client.get(submitted["response_url"].replace("http://testserver", "")).json()
    for key, name in (("video", f"dance-output.{fmt}"), ("mask_video", f"dance-mask.{fmt}")):
        assert result[key]["content_type"] == mime and result[key]["file_name"] == name
        path = fetch(client, result[key]["url"], tmp_path, f"{key}.{fmt}")
        with open_video(path, alpha=fmt != "gif" or key == "video") as reader:
            frames = list(reader.frames())
        assert len(frames) == 7 if fmt != "gif" else len(frames) >= 1
    if fmt == "webm":  # the cut-out keeps its alpha plane
        with open_video(fetch(client, result["video"]["url"], tmp_path, "again.webm"), alpha=True) as reader:
            alpha = np.asarray(next(reader.frames()).image)[..., 3]
        assert alpha.min() < alpha.max()


def test_sync_mode_answers_data_uris_and_keeps_nothing(client, clip: Path) -> None:
    response = client.post(
        "/fal-ai/birefnet/v2/video", json={"video_url": data_uri(clip), "sync_mode": True, "video_output_type": "VP9 (.webm)"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["video"]["url"].startswith("data:video/webm;base64,")
    assert client.get("/api/history").json() == []
    assert stored_files(client) == []


def test_bad_inputs_are_4xx_with_their_error_type_and_store_nothing(make_client, clip: Path, tmp_path: Path) -> None:
    client = make_client(max_video_frames=3)
    too_long = client.post("/fal-ai/birefnet/v2/video", json={"video_url": data_uri(clip)})
    assert too_long.status_code == 422 and too_long.json()["detail"][0]["type"] == "video_too_large"
    assert too_long.json()["detail"][0]["loc"] == ["body", "video_url"] and "3" in too_long.json()["detail"][0]["msg"]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[: len(clip.read_bytes()) // 3])
    bad = client.post("/fal-ai/birefnet/v2/video", json={"video_url": data_uri(broken)})
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "video_load_error"
    not_video = client.post("/fal-ai/birefnet/v2/video", json={"video_url": "data:video/mp4;base64,aGVsbG8="})
    assert not_video.status_code == 422 and not_video.json()["detail"][0]["type"] == "video_load_error"
    wrong = client.post("/fal-ai/birefnet/v2/video", json={"video_url": data_uri(clip), "video_output_type": "AV1"})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"][-1] == "video_output_type"
    assert client.post("/fal-ai/birefnet/v2/video", json={}).status_code == 422
    assert stored_files(client) == []


def test_a_cancel_stops_the_video_within_one_batch(make_client, clip: Path) -> None:
    client = make_client(batch_size=2)
    worker = client.app.state.service.worker
    real = worker.remover
    passes: list[int] = []
    started = threading.Event()

    def slow_remover(source: str):
        remover = real(source)
        predict = remover.predict

        def slow_predict(*args, **kwargs):
            passes.append(1)
            started.set()
            time.sleep(0.5)
            return predict(*args, **kwargs)

        remover.predict = slow_predict
        return remover

    worker.remover = slow_remover
    submitted = client.post(QUEUE, json={"video_url": data_uri(clip)}).json()
    assert started.wait(30)
    assert client.put(f"/queue/fal-ai/birefnet/requests/{submitted['request_id']}/cancel").status_code == 202
    final = wait_completed(client, STATUS.format(submitted["request_id"]))
    assert final["error_type"] == "client_cancelled"
    assert len(passes) <= 2  # the batch in hand, then it stops: 7 frames would take 4 passes
    assert client.get(f"/queue/fal-ai/birefnet/requests/{submitted['request_id']}").status_code == 499
    assert stored_files(client) == []


def test_the_schema_has_fals_fields_enums_and_order(client) -> None:
    schema = client.get("/openapi.json").json()
    video = schema["components"]["schemas"]["BirefnetV2VideoInput"]
    assert video["x-fal-order-properties"][:9] == [
        "model", "operating_resolution", "output_mask", "refine_foreground", "sync_mode", "video_url",
        "video_output_type", "video_quality", "video_write_mode",
    ]  # fmt: skip
    types = schema["components"]["schemas"]["VideoOutputType"]["enum"]
    assert types == ["X264 (.mp4)", "VP9 (.webm)", "PRORES4444 (.mov)", "GIF (.gif)"]
    assert video["properties"]["video_output_type"]["default"] == "X264 (.mp4)"
    assert schema["components"]["schemas"]["VideoQuality"]["enum"] == ["low", "medium", "high", "maximum"]
    assert schema["components"]["schemas"]["VideoWriteMode"]["enum"] == ["fast", "balanced", "small"]
    assert "/fal-ai/birefnet/v2/video" in schema["paths"] and QUEUE in schema["paths"]


def test_a_crash_mid_video_is_requeued_and_the_retry_finishes(tmp_path: Path, lite_checkpoint: Path) -> None:
    long_clip = write_clip(tmp_path / "long.mp4", size=(64, 48), frames=60)
    data_dir, log = tmp_path / "data", tmp_path / "server.log"
    env = {"BGONE_MAX_OPERATING_SIDE": "64", "BGONE_BATCH_SIZE": "1"}
    port = free_port()
    server, url = start_serve(data_dir, lite_checkpoint, log, port=port, env=env)
    try:
        submitted = httpx.post(f"{url}{QUEUE}", json={"video_url": data_uri(long_clip)}, timeout=30).json()
        status_url = f"{url}{STATUS.format(submitted['request_id'])}"
        deadline = time.time() + 120
        while True:  # kill it once some frames are done, well before the end
            status = httpx.get(status_url, params={"logs": 1}, timeout=30).json()
            if any(entry["message"].startswith("Processed") for entry in status["logs"] or []):
                break
            assert time.time() < deadline and status["status"] != "COMPLETED", status
            time.sleep(0.05)
    finally:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    server, url = start_serve(data_dir, lite_checkpoint, log, port=port, env=env)
    try:
        deadline = time.time() + 180
        while (status := httpx.get(status_url, timeout=30).json())["status"] != "COMPLETED":
            assert time.time() < deadline, status
            time.sleep(0.1)
        result = httpx.get(f"{url}/queue/fal-ai/birefnet/requests/{submitted['request_id']}", timeout=30)
        assert result.status_code == 200, result.text
        assert result.json()["video"]["num_frames"] == 60
        assert "re-queued" in log.read_text()
    finally:
        server.terminate()


def test_uploads_are_capped_by_the_limit_of_their_kind(make_client) -> None:
    client = make_client(max_image_bytes=1_000, max_video_bytes=50_000, max_request_bytes=10_000)
    video = client.post("/files/upload", content=b"v" * 20_000, headers={"content-type": "video/mp4"})
    assert video.status_code == 200  # over the image and request limits, under the video one
    named = client.post("/files/upload", content=b"v" * 20_000, headers={"x-fal-file-name": "clip.webm"})
    assert named.status_code == 200
    image = client.post("/files/upload", content=b"i" * 2_000, headers={"content-type": "image/png"})
    assert image.status_code == 413 and image.json()["error_type"] == "image_too_large"
    huge = client.post("/files/upload", content=b"v" * 60_000, headers={"content-type": "video/mp4"})
    assert huge.status_code == 413 and "50000-byte limit" in huge.json()["detail"]
    body = client.post("/fal-ai/birefnet/v2", json={"image_url": "x" * 20_000})
    assert body.status_code == 413 and body.json()["error_type"] == "request_too_large"  # JSON bodies still are
