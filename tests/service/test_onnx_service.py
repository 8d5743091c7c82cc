"""The service's worker running an exported ONNX graph named in the model map."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image
from service_helpers import png_data_uri, wait_completed

from video_clips import write_clip


def test_the_server_runs_an_onnx_model_from_its_model_map(lite_onnx: tuple[Path, dict], make_client) -> None:
    path, _ = lite_onnx
    client = make_client(model_map={"v2": {"General Use (Light)": str(path)}})
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(150, 100), "sync_mode": True})
    assert response.status_code == 200, response.text
    body = response.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["image"]["url"].partition(",")[2])))
    assert image.mode == "RGBA" and image.size == (150, 100)

    queued = client.post("/queue/fal-ai/birefnet/v2", json={"image_url": png_data_uri(150, 100)}).json()
    final = wait_completed(client, urlparse(queued["status_url"]).path)
    assert any("onnxruntime CPUExecutionProvider" in log["message"] for log in final["logs"])  # the runtime is named


def test_videos_run_on_the_onnx_backend_too(lite_onnx: tuple[Path, dict], make_client, tmp_path: Path) -> None:
    path, _ = lite_onnx
    client = make_client(model_map={"v2": {"General Use (Light)": str(path)}})
    clip = write_clip(tmp_path / "clip.mp4", size=(64, 48), frames=4)
    video_url = "data:video/mp4;base64," + base64.b64encode(clip.read_bytes()).decode()
    queued = client.post("/queue/fal-ai/birefnet/v2/video", json={"video_url": video_url}).json()
    final = wait_completed(client, urlparse(queued["status_url"]).path)
    messages = [log["message"] for log in final["logs"]]
    assert any("onnxruntime CPUExecutionProvider" in m for m in messages)
    assert any(m.startswith("Processed 4/4 frames") for m in messages) and final["metrics"]["frames"] == 4


def test_forcing_the_onnx_backend_on_a_checkpoint_fails_the_request_clearly(make_client) -> None:
    client = make_client(backend="onnx")
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(150, 100), "sync_mode": True})
    assert response.status_code >= 400
    assert "bgone export onnx" in response.text
