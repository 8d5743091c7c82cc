"""The service's worker running an exported ONNX graph named in the model map."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image
from service_helpers import png_data_uri, wait_completed


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


def test_forcing_the_onnx_backend_on_a_checkpoint_fails_the_request_clearly(make_client) -> None:
    client = make_client(backend="onnx")
    response = client.post("/fal-ai/birefnet/v2", json={"image_url": png_data_uri(150, 100), "sync_mode": True})
    assert response.status_code >= 400
    assert "bgone export onnx" in response.text
