"""rembg's HTTP API (``rembg s``) on bgone: ``GET /api/remove?url=…`` and ``POST /api/remove`` with
rembg's own parameter names, through a full service on seeded weights."""

from __future__ import annotations

import asyncio
import http.server
import io
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_helpers import settings_for

from bgone.pipeline.rembg_mask import matte
from bgone.service.jobs import open_job_store
from bgone.service.protocols import adapters_for
from bgone.service.protocols.rembg import RembgAdapter, resolve_rembg_model
from bgone.service.storage import open_storage
from bgone.service.worker import InferenceWorker
from bgone.settings import DEFAULT_MODEL_MAP
from conftest import synthetic_photo

ROUTE = "/api/remove"


def png_bytes(width: int = 120, height: int = 80, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    synthetic_photo(width, height, seed).save(buf, "PNG")
    return buf.getvalue()


def as_image(response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


def upload(client, data: bytes | None = None, *, params: dict | None = None, **form: str):
    """What a rembg client sends: ``requests.post(url, files={"file": ...}, data={...})``."""
    files = {"file": ("photo.png", data if data is not None else png_bytes(), "image/png")}
    return client.post(ROUTE, files=files, data=form, params=params)


def files_left(client, kind: str = "") -> list[Path]:
    """Stored files (``uploads``, ``outputs`` or all) still on disk."""
    root = client.app.state.service.settings.data_dir / "files"
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and kind in p.parts[-3]]


def uploads_left(client) -> list[Path]:
    return files_left(client, "uploads")


class ImageServer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/photo.png":
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(type(self).body)))
        self.end_headers()
        self.wfile.write(type(self).body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    ImageServer.body = png_bytes(96, 64, seed=3)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ImageServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    server.shutdown()


def test_get_with_url_and_post_with_file_answer_png(client, image_server: str) -> None:
    cutout = as_image(client.get(ROUTE, params={"url": image_server}))
    assert cutout.mode == "RGBA" and cutout.size == (96, 64)

    posted = upload(client)
    image = as_image(posted)
    assert image.mode == "RGBA" and image.size == (120, 80)
    assert posted.headers["x-fal-request-id"]
    # The default model is the one the server's map gives 'General Use (Light)' (here: the seeded file).
    job = client.app.state.service.store.get(posted.headers["x-fal-request-id"])
    assert job.endpoint == RembgAdapter.endpoint and not job.keep_history
    assert job.payload["input"]["model"] == client.app.state.service.settings.model_names("v2")["General Use (Light)"]
    assert job.payload["input"]["mask"]["refine_foreground"] is True
    assert client.get("/api/history").json() == []  # like fal's sync route
    assert files_left(client) == []  # the upload and the output went with the request


def test_private_urls_are_refused_unless_allowed(make_client) -> None:
    client = make_client(allow_private_urls=False)
    for url in ("http://127.0.0.1:9/x.png", "http://169.254.169.254/latest", "http://10.0.0.1/x.png"):
        response = client.get(ROUTE, params={"url": url})
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error_type"] == "file_download_error" and "refusing" in body["detail"]
    for url in ("ftp://example.com/x.png", "not a url", "file:///etc/passwd", "data:image/png;base64,AAAA"):
        response = client.get(ROUTE, params={"url": url})
        assert response.status_code == 400 and "http(s)" in response.json()["detail"]
    assert client.get(ROUTE).status_code == 422  # url is required, as in rembg


def rgba_png_bytes(width: int = 120, height: int = 80) -> bytes:
    """A photo whose left quarter is fully transparent (the cut-out's alpha is 0 there)."""
    image = synthetic_photo(width, height).convert("RGBA")
    image.paste((0, 0, 0, 0), (0, 0, width // 4, height))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_only_mask_background_colour_and_post_processing(client) -> None:
    data = rgba_png_bytes()
    cutout = np.asarray(as_image(upload(client, data)))
    assert (cutout[:, :30, 3] == 0).all()  # what was transparent stays transparent

    mask = as_image(upload(client, data, om="true"))
    assert mask.mode == "L" and mask.size == (120, 80)
    assert np.array_equal(np.asarray(mask), cutout[..., 3])  # the cut-out's alpha is the mask

    # bgc as rembg declares it on POST (a query parameter), and as a form field: RGBA over the colour
    for kwargs, colour in (
        ({"params": {"bgc": "255,255,255,255"}}, (255, 255, 255)),
        ({"bgc": "10, 20, 200"}, (10, 20, 200)),
    ):
        over = as_image(upload(client, data, **kwargs))
        assert over.mode == "RGBA"
        pixels = np.asarray(over).astype(int)
        assert (pixels[..., 3] == 255).all()
        assert (pixels[:, :30, :3] == colour).all()  # the colour where the cut-out was fully transparent
        expected = Image.alpha_composite(Image.new("RGBA", (120, 80), (*colour, 255)), Image.fromarray(cutout))
        assert np.abs(pixels - np.asarray(expected).astype(int)).max() <= 1

    binary = np.asarray(as_image(upload(client, data, om="true", ppm="true")))
    assert set(np.unique(binary)) <= {0, 255}
    processed = np.asarray(as_image(upload(client, data, ppm="1")))
    assert set(np.unique(processed[..., 3])) <= {0, 255}


def test_alpha_matting_keeps_the_soft_band_between_the_thresholds(client) -> None:
    data = png_bytes(seed=1)
    mask = np.asarray(as_image(upload(client, data, om="true")))
    af, ab = int(np.percentile(mask, 70)), int(np.percentile(mask, 30))
    matted = as_image(upload(client, data, a="true", af=str(af), ab=str(ab), ae="3"))
    alpha = np.asarray(matted)[..., 3]
    assert np.array_equal(alpha, np.asarray(matte(mask, af, ab, 3)))
    assert (alpha == 255).sum() > (mask == 255).sum() and (alpha == 0).sum() > (mask == 0).sum()
    soft = (alpha > 0) & (alpha < 255)
    assert soft.any() and np.array_equal(alpha[soft], mask[soft])  # not binarised: the model's alpha


def test_rembg_model_names(make_client, lite_checkpoint: Path) -> None:
    model_map = settings_for(Path("unused"), lite_checkpoint).model_map
    client = make_client(model_map={**model_map, "rembg": {"birefnet-general-lite": str(lite_checkpoint)}})
    response = upload(client, model="birefnet-general-lite")
    assert as_image(response).size == (120, 80)
    job = client.app.state.service.store.get(response.headers["x-fal-request-id"])
    assert job.payload["input"]["model"] == str(lite_checkpoint)
    assert job.payload["input"]["rembg_model"] == "birefnet-general-lite"

    for name in ("u2net", "isnet-general-use", "bria-rmbg", "sam", "/etc/passwd"):
        refused = client.get(ROUTE, params={"url": "http://example.com/x.png", "model": name})
        assert refused.status_code == 400
        body = refused.json()
        assert body["error_type"] == "unknown_model" and "not available in bgone" in body["detail"]
        assert "birefnet-general-lite" in body["detail"] and "birefnet-massive" in body["detail"]
    assert upload(client, model="u2net").status_code == 400
    assert uploads_left(client) == []


def test_model_names_resolve_to_the_zoo(tmp_path: Path, lite_checkpoint: Path) -> None:
    settings = settings_for(tmp_path, lite_checkpoint, model_map={})
    assert {name: resolve_rembg_model(settings, name) for name in DEFAULT_MODEL_MAP["rembg"]} == {
        "birefnet-general": "general",
        "birefnet-general-lite": "lite",
        "birefnet-portrait": "portrait",
        "birefnet-dis": "dis",
        "birefnet-hrsod": "hrsod",
        "birefnet-cod": "cod",
        "birefnet-massive": "massive",
    }
    assert resolve_rembg_model(settings, None) == "general"  # what General Use (Light) maps to
    assert resolve_rembg_model(settings, "BiRefNet-General-Lite") == "lite"
    assert resolve_rembg_model(settings, "hr") == "hr"  # bgone names work too
    assert resolve_rembg_model(settings, "General Use (Heavy)") == "lite"
    remapped = settings_for(tmp_path, lite_checkpoint, model_map={"v2": {"General Use (Light)": "lite-2k"}})
    assert resolve_rembg_model(remapped, "") == "lite-2k"


def test_bad_parameters_are_422_naming_the_field(client) -> None:
    url = "http://example.com/x.png"
    for params, field in (
        ({"af": "256"}, "af"),
        ({"ab": "-1"}, "ab"),
        ({"ae": "-1"}, "ae"),
        ({"ae": "1000"}, "ae"),
        ({"a": "maybe"}, "a"),
        ({"om": "2"}, "om"),
        ({"bgc": "red"}, "bgc"),
        ({"bgc": "1,2"}, "bgc"),
        ({"bgc": "0,0,0,256"}, "bgc"),
        ({"extras": '{"operating_resolution": "100x100"}'}, "extras"),
        ({"extras": '{"refine_foreground": "no"}'}, "extras"),
    ):
        response = client.get(ROUTE, params={"url": url, **params})
        assert response.status_code == 422, (params, response.text)
        assert response.json()["detail"][0]["loc"] == ["query", field], params
    for form, loc in (({"af": "300"}, ["body", "af"]), ({"bgc": "1,2,3,4,5"}, ["body", "bgc"])):
        response = upload(client, **form)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == loc
    response = upload(client, params={"bgc": "x"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "bgc"]
    no_file = client.post(ROUTE, data={"model": "birefnet-general-lite"})
    assert no_file.status_code == 422 and no_file.json()["detail"][0]["loc"] == ["body", "file"]
    assert uploads_left(client) == []


def test_extras_are_read_or_ignored_like_rembg(client) -> None:
    ignored = upload(client, extras="{not json")
    assert as_image(ignored).size == (120, 80)
    honoured = upload(
        client, params={"extras": '{"operating_resolution": "32x32", "refine_foreground": false, "sam_prompt": []}'}
    )
    assert as_image(honoured).size == (120, 80)
    payload = client.app.state.service.store.get(honoured.headers["x-fal-request-id"]).payload["input"]
    assert payload["operating_resolution"] == "32x32" and payload["mask"]["refine_foreground"] is False
    capped = upload(client, extras='{"operating_resolution": "2048x2048"}')  # the server caps sides at 64
    job = client.app.state.service.store.get(capped.headers["x-fal-request-id"])
    assert job.payload["input"]["operating_resolution"] == "2048x2048" and job.batch_key.endswith("|64x64")


def test_animations_come_back_as_animated_png(client) -> None:
    frames = [synthetic_photo(48, 32, seed=i).convert("P") for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)
    image = as_image(upload(client, buf.getvalue()))
    assert getattr(image, "n_frames", 1) == 3 and image.size == (48, 32)
    assert files_left(client) == []


def test_size_limits_and_unreadable_images(make_client) -> None:
    client = make_client(max_image_bytes=4096)
    big = png_bytes(200, 200)
    assert len(big) > 4096
    response = upload(client, big)
    assert response.status_code == 413
    assert "4096-byte limit" in response.json()["detail"] and response.json()["error_type"] == "image_too_large"
    empty = upload(client, b"")
    assert empty.status_code == 400 and "empty" in empty.json()["detail"]
    broken = upload(client, b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    assert broken.status_code == 422 and broken.json()["error_type"] == "image_load_error"
    assert broken.headers["x-fal-error-type"] == "image_load_error"
    assert uploads_left(client) == []

    pixels = make_client(max_image_pixels=60 * 40 - 1)
    over = upload(pixels, png_bytes(60, 40))
    assert over.status_code == 413 and over.json()["error_type"] == "image_too_large"


def test_auth_is_the_same_as_on_the_fal_routes(make_client) -> None:
    client = make_client(open_access=False, api_keys=["s3cret"])
    assert upload(client).status_code == 401
    assert client.get(ROUTE, params={"url": "http://example.com/x.png"}).status_code == 401
    response = client.post(
        ROUTE,
        files={"file": ("photo.png", png_bytes(), "image/png")},
        headers={"authorization": "Key s3cret"},
    )
    assert as_image(response).size == (120, 80)


def test_the_internal_endpoint_is_no_fal_route(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths[ROUTE]) == {"get", "post"}
    assert not any("rembg" in path for path in paths)
    for path in ("/bgone/rembg", "/queue/bgone/rembg", "/fal-ai/birefnet/rembg"):
        assert client.post(path, json={"image_url": "x"}).status_code in (404, 405)


def test_rembg_and_fal_jobs_share_batch_keys(tmp_path: Path, lite_checkpoint: Path) -> None:
    settings = settings_for(tmp_path, lite_checkpoint)
    adapters = adapters_for(settings)
    fal = adapters["fal-ai/birefnet/v2"].parse({"image_url": "x"}).batch_key
    rembg = adapters[RembgAdapter.endpoint].parse({"image_url": "x", "model": resolve_rembg_model(settings, None)}).batch_key
    assert fal == rembg == f"{lite_checkpoint}|64x64"


def test_an_api_node_queues_and_a_separate_worker_runs_it(make_client, tmp_path: Path, lite_checkpoint: Path) -> None:
    """role=api: the route only queues; a worker with its own settings (another process in production)
    finds everything it needs in the job."""
    client = make_client(role="api")
    app = client.app
    worker = InferenceWorker(settings_for(tmp_path / "worker", lite_checkpoint), app.state.service.store, app.state.service.storage)
    worker.start()
    try:
        image = as_image(upload(client, om="true", ppm="true"))
        assert image.mode == "L" and set(np.unique(np.asarray(image))) <= {0, 255}
    finally:
        worker.stop()
    assert uploads_left(client) == []


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                break
            except OSError:
                assert time.time() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0?namespace=rembg-test"
    finally:
        process.terminate()
        process.wait(10)


def test_redis_api_node_and_worker_with_their_own_connections(
    redis_url: str, make_client, tmp_path: Path, lite_checkpoint: Path
) -> None:
    """The distributed layout: an API node on Redis that loads no model, and a worker with its own
    queue connection and storage handle (as `bgone worker` on another machine), sharing the files."""
    client = make_client(role="api", queue=redis_url)
    files = client.app.state.service.settings.data_dir / "files"
    worker_settings = settings_for(tmp_path / "worker", lite_checkpoint, queue=redis_url)
    worker_store = open_job_store(redis_url, tmp_path / "worker")
    worker = InferenceWorker(worker_settings, worker_store, open_storage(f"file://{files}", tmp_path / "worker"))
    worker.start()
    try:
        mask = as_image(upload(client, om="true"))
        assert mask.mode == "L" and mask.size == (120, 80)
        refused = upload(client, b"not an image")
        assert refused.status_code == 422 and refused.json()["error_type"] == "image_load_error"
    finally:
        worker.stop()
        worker_store.close()
    assert files_left(client) == []
    client.app.state.service.store.close()  # the app leaves its store open; close it before Redis stops


def test_a_client_that_disconnects_cancels_its_request(make_client) -> None:
    """Nobody will read the result, so the queued job is cancelled rather than left for the worker."""
    client = make_client(start_worker=False)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "root_path": "",
        "query_string": b"url=http://example.com/x.png",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    incoming = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499
    request_id = dict(start["headers"])[b"x-fal-request-id"].decode()
    job = client.app.state.service.store.get(request_id)
    assert job.status == "COMPLETED" and job.error_type == "client_cancelled"
