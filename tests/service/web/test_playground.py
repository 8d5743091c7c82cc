"""The playground (src/bgone/service/web) in a real Chromium against a real bgone server on seeded weights:
images, and videos (tiny PyAV clips) through the Image / Video switch."""

from __future__ import annotations

import base64
import contextlib
import io
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Chromium is not installed at /usr/bin/chromium", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
uvicorn = pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/service/service_helpers.py
from service_helpers import live_server, settings_for  # noqa: E402

from bgone.service.app import create_app  # noqa: E402
from bgone.service.protocols.fal_schemas import BirefnetV2Input, BirefnetV2VideoInput, field_order  # noqa: E402
from conftest import synthetic_photo  # noqa: E402  (tests/conftest.py)
from video_clips import truncated_copy, write_clip  # noqa: E402  (tests/video_clips.py)

expect = sync_api.expect
ROOT = Path(__file__).resolve().parents[3]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT = 45_000  # ms: the first run loads the (seeded) model
ALL_PROBLEMS: list[str] = []  # console errors and page errors of every test, checked by the last one


def png_file(width: int = 160, height: int = 120, seed: int = 0, name: str = "photo.png") -> dict:
    buf = io.BytesIO()
    synthetic_photo(width, height, seed).save(buf, "PNG")
    return {"name": name, "mimeType": "image/png", "buffer": buf.getvalue()}


def video_file(path: Path, mime: str = "video/mp4") -> dict:
    return {"name": path.name, "mimeType": mime, "buffer": path.read_bytes()}


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def make_server(tmp_path_factory: pytest.TempPathFactory, lite_checkpoint: Path) -> Iterator[Callable[..., str]]:
    """make_server(**settings) -> base URL of a real uvicorn-served bgone on 127.0.0.1."""
    with contextlib.ExitStack() as servers:

        def make(**overrides: object) -> str:
            app = create_app(settings_for(tmp_path_factory.mktemp("web-data"), lite_checkpoint, **overrides))
            return servers.enter_context(live_server(app))

        yield make


@pytest.fixture(scope="module")
def open_server(make_server: Callable[..., str]) -> str:
    return make_server()


@pytest.fixture(scope="module")
def video_server(make_server: Callable[..., str]) -> str:
    return make_server(batch_size=1)  # one pass per frame: progress to watch


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    dance = write_clip(folder / "dance.mp4", size=(64, 48), frames=20)
    return {
        "dance": dance,  # about 3 s at one frame per pass: several progress lines
        "short": write_clip(folder / "short.mp4", size=(64, 48), frames=6),
        "broken": truncated_copy(dance, folder / "broken.mp4", 0.3),
    }


class Console:
    """Console errors and uncaught page errors; HTTP statuses a test provokes on purpose can be allowed."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.allowed_statuses: set[int] = set()
        self.allow_network_errors = False

    def allow(self, *statuses: int) -> None:
        self.allowed_statuses.update(statuses)

    def unexpected(self) -> list[str]:
        def expected(text: str) -> bool:
            if self.allow_network_errors and "Failed to load resource: net::ERR_" in text:
                return True
            match = re.search(r"Failed to load resource: the server responded with a status of (\d+)", text)
            return bool(match) and int(match.group(1)) in self.allowed_statuses

        return [p for p in self.problems if not expected(p)]


@pytest.fixture
def console() -> Console:
    return Console()


def open_page(browser: object, console: Console, *, width: int = 1280, height: int = 900) -> object:
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = context.new_page()
    page.on(
        "console", lambda msg: console.problems.append(f"console.error: {msg.text}") if msg.type == "error" else None
    )
    page.on("pageerror", lambda exc: console.problems.append(f"pageerror: {exc}"))
    return page


@pytest.fixture
def page(browser: object, console: Console) -> Iterator[object]:
    page = open_page(browser, console)
    yield page
    page.context.close()
    unexpected = console.unexpected()
    ALL_PROBLEMS.extend(unexpected)
    assert not unexpected, unexpected


def goto(page: object, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")


def run_and_wait(page: object) -> None:
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Completed", timeout=RUN_TIMEOUT)


def download(page: object, testid: str) -> Image.Image:
    link = page.get_by_test_id(testid)
    expect(link).not_to_have_attribute("aria-disabled", "true")
    with page.expect_download() as info:
        link.click()
    path = info.value.path()
    image = Image.open(path)
    image.load()
    return image


def keyboard_pick_file(page: object, file: dict) -> None:
    """Enter on the focused dropzone opens the file chooser. Playwright's chooser interception in headless
    Chromium now and then misses a chooser that did open (the click had user activation), so try again."""
    for attempt in range(3):
        try:
            with page.expect_file_chooser(timeout=2_000) as chooser:
                page.keyboard.press("Enter")
        except sync_api.TimeoutError:
            if attempt == 2:
                raise
            continue
        chooser.value.set_files(file)
        return


def screenshot_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("BGONE_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# -- tests --------------------------------------------------------------------------------------
def test_upload_run_result_mask_and_downloads(page, open_server: str, tmp_path: Path) -> None:
    goto(page, open_server)
    # The form is generated from /openapi.json in x-fal-order-properties order, with the schema defaults.
    order = page.eval_on_selector_all("#fields [data-field]", "nodes => nodes.map(n => n.dataset.field)")
    assert order == [name for name in field_order(BirefnetV2Input) if name != "image_url"]
    expect(page.get_by_test_id("field-model")).to_have_value("General Use (Light)")
    expect(page.get_by_test_id("field-refine_foreground")).to_be_checked()
    expect(page.get_by_test_id("field-output_mask")).not_to_be_checked()

    page.get_by_test_id("file-input").set_input_files(png_file(160, 120))
    expect(page.get_by_test_id("preview")).to_be_visible()
    expect(page.get_by_test_id("preview-name")).to_have_text("photo.png")
    run_and_wait(page)

    result = page.get_by_test_id("result-image")
    expect(result).to_be_visible()
    assert page.evaluate("document.getElementById('result-img').naturalWidth") == 160
    expect(page.get_by_test_id("logs")).to_contain_text("Completed")
    expect(page.get_by_test_id("facts")).to_contain_text("160 × 120")

    # Mask view (derived from the alpha channel: output_mask is off by default).
    page.get_by_test_id("tab-mask").click()
    expect(page.get_by_test_id("mask-image")).to_be_visible()
    # Before/after slider: keyboard-operable.
    page.get_by_test_id("tab-compare").click()
    slider = page.get_by_test_id("compare-slider")
    expect(slider).to_be_visible()
    slider.focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(slider).to_have_attribute("aria-valuenow", "46")
    page.keyboard.press("End")
    expect(slider).to_have_attribute("aria-valuenow", "100")
    page.keyboard.press("Home")
    expect(slider).to_have_attribute("aria-valuenow", "0")
    # Zoom: 1:1 shows actual pixels, fit goes back.
    page.get_by_test_id("zoom-1to1").click()
    expect(page.get_by_test_id("zoom-value")).to_have_text("100%")
    page.get_by_test_id("zoom-fit").click()
    expect(page.get_by_test_id("zoom-value")).to_have_text("Fit")

    image = download(page, "download-image")
    assert (image.format, image.size, image.mode) == ("PNG", (160, 120), "RGBA")
    mask = download(page, "download-mask")
    assert mask.format == "PNG" and mask.size == (160, 120) and mask.mode in ("L", "LA")
    assert mask.convert("L").tobytes() == image.getchannel("A").tobytes()

    # Copy as curl / Python: the snippet is shown and lands on the clipboard.
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=open_server)
    page.get_by_test_id("copy-python").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Copied")
    snippet = page.get_by_test_id("snippet")
    expect(snippet).to_contain_text('fal_client.subscribe(\n    "fal-ai/birefnet/v2"')
    clip = page.evaluate("navigator.clipboard.readText()")
    assert '"refine_foreground": True' in clip and "/files/uploads/" in clip
    page.get_by_test_id("copy-curl").click()
    clip = page.evaluate("navigator.clipboard.readText()")
    assert (
        clip.startswith(f'curl -X POST "{open_server}/fal-ai/birefnet/v2"') and '"model": "General Use (Light)"' in clip
    )

    page.get_by_test_id("tab-compare").click()
    page.get_by_test_id("compare-slider").focus()
    page.keyboard.press("PageUp")  # 10%
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    page.screenshot(path=str(screenshot_dir(tmp_path) / "playground-result.png"))


def test_docs_screenshot(page, open_server: str, tmp_path: Path) -> None:
    """BGONE_UPDATE_DOCS_SCREENSHOT=1 rewrites docs/playground.png (a finished result, 1280x900)."""
    if not os.environ.get("BGONE_UPDATE_DOCS_SCREENSHOT"):
        pytest.skip("set BGONE_UPDATE_DOCS_SCREENSHOT=1 to regenerate docs/playground.png")
    goto(page, open_server)
    page.get_by_test_id("file-input").set_input_files(png_file(720, 540, seed=3, name="portrait.png"))
    page.get_by_test_id("field-output_mask").check()
    run_and_wait(page)
    page.get_by_test_id("tab-compare").click()
    page.get_by_test_id("code").evaluate("node => node.open = false")
    page.mouse.move(0, 0)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    shot = screenshot_dir(tmp_path) / "playground.png"
    page.screenshot(path=str(shot))
    shutil.copyfile(shot, ROOT / "docs" / "playground.png")


def test_cancel_a_queued_request(page, make_server: Callable[..., str]) -> None:
    url = make_server(start_worker=False)  # nothing runs: the request stays in the queue
    goto(page, url)
    page.get_by_test_id("file-input").set_input_files(png_file())
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("In queue", timeout=10_000)
    expect(page.get_by_test_id("status-text")).to_have_text("next in line")
    expect(page.get_by_test_id("elapsed")).to_have_text(re.compile(r"\d+\.\d+ s"))
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Cancelled", timeout=10_000)
    expect(page.get_by_test_id("error-title")).to_have_text("Cancelled")
    expect(page.get_by_test_id("cancel")).to_be_hidden()
    expect(page.get_by_test_id("logs")).to_contain_text(re.compile("cancelled", re.IGNORECASE))
    # The cancelled request shows up in the history as such.
    expect(page.get_by_test_id("history-item").first).to_contain_text("Cancelled")


def test_validation_error_names_the_field(page, console: Console, open_server: str) -> None:
    console.allow(422)
    goto(page, open_server)
    page.get_by_test_id("file-input").set_input_files(png_file())
    page.get_by_test_id("field-operating_resolution").select_option("2304x2304")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("error-title")).to_have_text("Invalid input", timeout=10_000)
    body = page.get_by_test_id("error-body")
    expect(body).to_contain_text("Operating resolution")
    expect(body).to_contain_text("only available for the 'General Use (Dynamic)' model")
    expect(page.get_by_test_id("error-operating_resolution")).to_be_visible()
    expect(page.get_by_test_id("field-operating_resolution")).to_have_attribute("aria-invalid", "true")
    # Fixing the field clears its message.
    page.get_by_test_id("field-model").select_option("General Use (Dynamic)")
    page.get_by_test_id("field-operating_resolution").select_option("1024x1024")
    expect(page.get_by_test_id("error-operating_resolution")).to_be_hidden()


def test_the_model_field_says_what_each_name_runs_here(page, make_server: Callable[..., str]) -> None:
    # fal's own map, but Heavy remapped to the general model: the form shows this server's choice.
    server = make_server(model_map={"v2": {"General Use (Heavy)": "general", "General Use (Light)": "lite"}})
    goto(page, server)
    runs = page.get_by_test_id("model-runs")
    expect(runs).to_have_text("Runs here: General use, lite (Swin-T) (ZhengPeng7/BiRefNet_lite)")
    page.get_by_test_id("field-model").select_option("General Use (Heavy)")
    expect(runs).to_have_text("Runs here: General use (Swin-L) (ZhengPeng7/BiRefNet)")
    page.get_by_test_id("field-model").select_option("Portrait")
    expect(runs).to_contain_text("Portrait (Swin-L)")


def test_a_model_mapped_to_a_file_shows_the_file_name(page, video_server: str, clips: dict[str, Path]) -> None:
    goto(page, video_server)  # every v2 name runs one checkpoint file here
    runs = page.get_by_test_id("model-runs")
    expect(runs).to_have_text("Runs here: lite-seeded.safetensors")
    assert runs.get_attribute("title").endswith("lite-seeded.safetensors")


def test_client_side_file_checks(page, make_server: Callable[..., str]) -> None:
    url = make_server(max_image_bytes=2000)
    goto(page, url)
    page.get_by_test_id("file-input").set_input_files({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"})
    expect(page.get_by_test_id("image-error")).to_contain_text("“notes.txt” is not an image")
    page.get_by_test_id("file-input").set_input_files(png_file(160, 120))
    expect(page.get_by_test_id("image-error")).to_contain_text("over this server's limit of")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("image-error")).to_contain_text("Choose an image")


def test_failures_are_explained(page, console: Console, open_server: str) -> None:
    console.allow(422, 503)
    console.allow_network_errors = True
    goto(page, open_server)
    # The worker cannot fetch the image: the request fails and the message names the image.
    page.get_by_test_id("image-url").fill("http://127.0.0.1:9/missing.png")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Failed", timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id("error-body")).to_contain_text("Image")
    expect(page.get_by_test_id("image-error")).to_be_visible()
    # The server is busy.
    page.route(
        "**/queue/fal-ai/birefnet/v2",
        lambda route: route.fulfill(status=503, json={"detail": "Too many requests in the queue"}),
    )
    page.get_by_test_id("image-url").fill("https://example.com/photo.jpg")
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("error-title")).to_have_text("Server busy")
    expect(page.get_by_test_id("error-body")).to_contain_text("Too many requests in the queue")
    # The network is down.
    page.unroute("**/queue/fal-ai/birefnet/v2")
    page.route("**/queue/fal-ai/birefnet/v2", lambda route: route.abort())
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("error-title")).to_have_text("Network error")
    expect(page.get_by_test_id("error-body")).to_contain_text("Could not reach the server")


def test_api_key(page, console: Console, make_server: Callable[..., str]) -> None:
    console.allow(401)
    url = make_server(open_access=False, api_keys=["k1"])
    goto(page, url)
    expect(page.get_by_test_id("api-key")).to_be_visible()
    expect(page.get_by_test_id("history-note")).to_contain_text("Enter the API key")
    page.get_by_test_id("file-input").set_input_files(png_file())
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("error-title")).to_have_text("Unauthorized", timeout=10_000)
    expect(page.get_by_test_id("error-body")).to_contain_text("API key")

    page.get_by_test_id("api-key").fill("k1")
    page.get_by_test_id("api-key").press("Enter")
    expect(page.get_by_test_id("api-key-state")).to_have_text("saved")
    assert page.evaluate("localStorage.getItem('bgone.apiKey')") == "k1"
    expect(page.get_by_test_id("error")).to_be_hidden()
    page.get_by_test_id("field-output_mask").check()
    run_and_wait(page)
    # The server's own mask file this time.
    assert "/files/" in page.get_by_test_id("download-mask").get_attribute("href")
    mask = download(page, "download-mask")
    assert mask.format == "PNG" and mask.size == (160, 120) and mask.mode in ("L", "LA")
    expect(page.get_by_test_id("snippet")).to_contain_text("Authorization: Key $FAL_KEY")
    expect(page.get_by_test_id("history-item")).to_have_count(1)


def test_history_reopens_a_result(page, open_server: str) -> None:
    goto(page, open_server)
    page.get_by_test_id("file-input").set_input_files(png_file(96, 72, seed=5, name="small.png"))
    page.get_by_test_id("field-output_format").select_option("webp")
    run_and_wait(page)
    request_id = page.get_by_test_id("viewer").get_attribute("data-request-id")
    result_src = page.get_by_test_id("result-image").get_attribute("src")
    item = page.locator(f"[data-testid=history-item][data-request-id='{request_id}']")
    expect(item).to_be_visible()
    expect(item).to_contain_text("Done")

    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("result-image")).to_be_hidden()
    item.click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Completed")
    expect(page.get_by_test_id("result-image")).to_have_attribute("src", result_src)
    expect(page.get_by_test_id("result-image")).to_be_visible()
    expect(page.get_by_test_id("facts")).to_contain_text(request_id)
    expect(page.get_by_test_id("field-output_format")).to_have_value("webp")
    expect(item).to_have_attribute("aria-current", "true")
    expect(page.get_by_test_id("download-image")).to_have_attribute("download", re.compile(r"\.webp$"))


def test_phone_layout_and_keyboard_only_flow(browser, console: Console, open_server: str, tmp_path: Path) -> None:
    page = open_page(browser, console, width=375, height=740)
    try:
        goto(page, open_server)
        no_overflow = "document.documentElement.scrollWidth <= window.innerWidth"
        assert page.evaluate(no_overflow)
        # Keyboard only: Tab to the dropzone, Enter opens the file chooser, Tab on to Run, Enter runs.
        focused = "document.activeElement && (document.activeElement.dataset.testid || document.activeElement.id)"
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate(focused) == "dropzone":
                break
        assert page.evaluate(focused) == "dropzone"
        keyboard_pick_file(page, png_file())
        expect(page.get_by_test_id("preview")).to_be_visible()
        seen = []
        for _ in range(30):
            page.keyboard.press("Tab")
            seen.append(page.evaluate(focused))
            if seen[-1] == "run":
                break
        assert seen[-1] == "run", seen
        assert {"image-url", "field-model", "field-operating_resolution", "field-output_mask"} <= set(seen)
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("status-pill")).to_have_text("Completed", timeout=RUN_TIMEOUT)
        expect(page.get_by_test_id("result-image")).to_be_visible()
        assert page.evaluate(no_overflow), page.evaluate("document.documentElement.scrollWidth")
        for testid in ("run", "stage", "download-image", "tab-mask"):
            box = page.get_by_test_id(testid).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375, (testid, box)
        page.screenshot(path=str(screenshot_dir(tmp_path) / "playground-phone.png"), full_page=True)
    finally:
        page.context.close()
    unexpected = console.unexpected()
    ALL_PROBLEMS.extend(unexpected)
    assert not unexpected, unexpected


# -- videos -------------------------------------------------------------------------------------
FOCUSED = "document.activeElement && (document.activeElement.dataset.testid || document.activeElement.id)"


def field_names(page: object) -> list[str]:
    return page.eval_on_selector_all("#fields [data-field]", "nodes => nodes.map(n => n.dataset.field)")


def test_video_mode_switch_and_form(page, open_server: str, clips: dict[str, Path]) -> None:
    goto(page, open_server)
    switch = page.get_by_test_id("mode-switch")
    expect(switch).to_have_attribute("role", "radiogroup")
    expect(page.get_by_test_id("mode-image")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("mode-video")).to_have_attribute("tabindex", "-1")
    expect(page.get_by_test_id("endpoint")).to_have_text("fal-ai/birefnet/v2")
    page.get_by_test_id("field-model").select_option("General Use (Heavy)")

    # Keyboard: the checked radio is the tab stop; arrow keys move and choose.
    page.get_by_test_id("mode-image").focus()
    page.keyboard.press("ArrowRight")
    assert page.evaluate(FOCUSED) == "mode-video"
    expect(page.get_by_test_id("mode-video")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("mode-video")).to_have_attribute("tabindex", "0")
    expect(page.get_by_test_id("mode-image")).to_have_attribute("aria-checked", "false")
    expect(page.get_by_test_id("endpoint")).to_have_text("fal-ai/birefnet/v2/video")
    expect(page.locator("#image-label")).to_contain_text("Video")
    expect(page.get_by_test_id("dropzone")).to_contain_text("Drop a video")
    # The video schema's fields in fal's order, with its defaults; the shared model setting came along.
    assert field_names(page) == [name for name in field_order(BirefnetV2VideoInput) if name != "video_url"]
    expect(page.get_by_test_id("field-video_output_type")).to_have_value("X264 (.mp4)")
    expect(page.get_by_test_id("field-video_quality")).to_have_value("high")
    expect(page.get_by_test_id("field-video_write_mode")).to_have_value("balanced")
    expect(page.get_by_test_id("field-background_color")).to_have_value("#000000")
    expect(page.get_by_test_id("field-refine_foreground")).to_be_checked()
    expect(page.get_by_test_id("field-output_mask")).not_to_be_checked()
    expect(page.get_by_test_id("field-model")).to_have_value("General Use (Heavy)")
    options = page.eval_on_selector_all("#f-video_output_type option", "nodes => nodes.map(n => n.value)")
    assert options == ["X264 (.mp4)", "VP9 (.webm)", "PRORES4444 (.mov)", "GIF (.gif)"]
    snippet = page.get_by_test_id("snippet")
    expect(snippet).to_contain_text(f'curl -X POST "{open_server}/fal-ai/birefnet/v2/video"')
    expect(snippet).to_contain_text('"video_url": "https://example.com/clip.mp4"')
    page.get_by_test_id("field-video_quality").select_option("low")

    # Back to Image: its form again; the video-only value is kept for the next visit.
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_test_id("mode-image")).to_have_attribute("aria-checked", "true")
    assert field_names(page) == [name for name in field_order(BirefnetV2Input) if name != "image_url"]
    expect(snippet).to_contain_text(f'curl -X POST "{open_server}/fal-ai/birefnet/v2"\n')
    page.get_by_test_id("mode-video").click()
    expect(page.get_by_test_id("field-video_quality")).to_have_value("low")
    page.get_by_test_id("mode-image").click()

    # A video file switches to Video, an image back to Image, a video URL to Video.
    page.get_by_test_id("file-input").set_input_files(video_file(clips["short"]))
    expect(page.get_by_test_id("mode-video")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("preview-video")).to_be_visible()
    expect(page.get_by_test_id("preview-name")).to_have_text("short.mp4")
    expect(page.locator("#preview-info")).to_contain_text("64 × 48")
    expect(snippet).to_contain_text("upload short.mp4 first")
    page.get_by_test_id("file-input").set_input_files(png_file())
    expect(page.get_by_test_id("mode-image")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("preview")).to_be_visible()
    expect(page.get_by_test_id("preview-video")).to_be_hidden()
    data_uri = "data:video/mp4;base64," + base64.b64encode(clips["short"].read_bytes()).decode()
    page.get_by_test_id("image-url").fill(data_uri)
    page.get_by_test_id("image-url").press("Tab")
    expect(page.get_by_test_id("mode-video")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("preview-name")).to_have_text("Video from a data URI")
    # Switching by hand drops an input of the other kind.
    page.get_by_test_id("mode-image").click()
    expect(page.get_by_test_id("image-url")).to_have_value("")
    expect(page.get_by_test_id("preview-video")).to_be_hidden()


WATCH_PROGRESS = """() => {
  window.seenFrames = [];
  window.seenStatus = [];
  const bar = document.getElementById("frame-progress");
  new MutationObserver(() => window.seenFrames.push(bar.getAttribute("aria-valuetext"))).observe(bar, { attributes: true });
  const text = document.getElementById("status-text");
  new MutationObserver(() => window.seenStatus.push(text.textContent)).observe(text, { childList: true, characterData: true, subtree: true });
}"""
# A WebM with alpha decodes: drawn over a transparent canvas, some pixels stay see-through.
HAS_ALPHA = """(id) => {
  const v = document.getElementById(id);
  if (v.readyState < 2 || !v.videoWidth) return false;
  const canvas = document.createElement("canvas");
  canvas.width = v.videoWidth;
  canvas.height = v.videoHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(v, 0, 0);
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  for (let i = 3; i < px.length; i += 4) if (px[i] < 255) return true;
  return false;
}"""
# Playback starts late on a busy machine (software video decoding shares the cores with the server).
PLAY_TIMEOUT = 40_000
PLAYING = "(id) => { const v = document.getElementById(id); return v.readyState >= 2 && v.videoWidth === 64 && !v.paused && v.currentTime > 0; }"


def test_video_run_progress_result_and_downloads(page, video_server: str, clips: dict[str, Path]) -> None:
    goto(page, video_server)
    page.get_by_test_id("file-input").set_input_files(video_file(clips["dance"]))
    expect(page.get_by_test_id("mode-video")).to_have_attribute("aria-checked", "true")
    page.get_by_test_id("field-video_output_type").select_option("VP9 (.webm)")
    page.get_by_test_id("field-output_mask").check()
    page.evaluate(WATCH_PROGRESS)
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("frame-progress")).to_be_visible(timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id("status-pill")).to_have_text("Completed", timeout=RUN_TIMEOUT)

    # Progress in frames from the "Processed N/M frames" lines: some on the way, then all 20.
    frames = [t for t in page.evaluate("window.seenFrames") if t]
    done = [int(t.split()[0]) for t in frames]
    assert frames[-1] == "20 of 20 frames" and any(0 < n < 20 for n in done), frames
    assert done == sorted(done), frames
    statuses = page.evaluate("window.seenStatus")
    assert any(re.fullmatch(r"\d+/20 frames · [\d.]+ fps( · about \d+ s left)?", t) for t in statuses), statuses
    expect(page.get_by_test_id("status-text")).to_have_text(re.compile(r"^20 frames in \d"))
    expect(page.get_by_test_id("frame-progress")).to_be_hidden()

    # The result plays over the checkerboard, its alpha intact; the image is not used.
    expect(page.get_by_test_id("result-video")).to_be_visible()
    expect(page.get_by_test_id("result-image")).to_be_hidden()
    video = page.get_by_test_id("result-video")
    for attr in ("controls", "loop", "muted", "autoplay"):
        assert video.get_attribute(attr) is not None, attr
    page.wait_for_function(PLAYING, arg="result-video", timeout=PLAY_TIMEOUT)
    page.wait_for_function(HAS_ALPHA, arg="result-video", timeout=PLAY_TIMEOUT)
    assert page.evaluate("getComputedStyle(document.getElementById('result-video')).backgroundImage").startswith(
        "repeating-conic-gradient"
    )
    facts = page.get_by_test_id("facts")
    for fact in ("64 × 48", "Frames20", "25 fps", "0.80 s", "video/webm"):
        expect(facts).to_contain_text(fact)
    # The mask video, in step with the result.
    page.get_by_test_id("tab-mask").click()
    expect(page.get_by_test_id("mask-video")).to_be_visible()
    page.wait_for_function(PLAYING, arg="mask-video", timeout=PLAY_TIMEOUT)
    page.get_by_test_id("tab-compare").click()
    expect(page.get_by_test_id("before-video")).to_be_visible()
    page.get_by_test_id("tab-result").click()

    # Downloads: the video and the mask, under their own names.
    link = page.get_by_test_id("download-image")
    expect(link).to_have_text("Video")
    expect(link).to_have_attribute("download", "dance-output.webm")
    expect(page.get_by_test_id("download-mask")).to_have_attribute("download", "dance-mask.webm")
    for testid, name in (("download-image", "dance-output.webm"), ("download-mask", "dance-mask.webm")):
        with page.expect_download() as info:
            page.get_by_test_id(testid).click()
        assert info.value.suggested_filename == name
        assert Path(info.value.path()).read_bytes()[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM
    snippet = page.get_by_test_id("snippet")
    expect(snippet).to_contain_text(f'curl -X POST "{video_server}/fal-ai/birefnet/v2/video"')
    expect(snippet).to_contain_text('"video_output_type": "VP9 (.webm)"')
    page.get_by_test_id("copy-python").click()
    expect(snippet).to_contain_text('print(result["video"]["url"])')

    # The history has it, and reopens it as a video with its settings.
    request_id = page.get_by_test_id("viewer").get_attribute("data-request-id")
    src = video.get_attribute("src")
    item = page.locator(f"[data-testid=history-item][data-request-id='{request_id}']")
    expect(item).to_contain_text("Video")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("mode-image")).to_have_attribute("aria-checked", "true")
    item.click()
    expect(page.get_by_test_id("mode-video")).to_have_attribute("aria-checked", "true")
    expect(page.get_by_test_id("status-pill")).to_have_text("Completed")
    expect(video).to_have_attribute("src", src)
    page.wait_for_function(PLAYING, arg="result-video", timeout=PLAY_TIMEOUT)
    expect(page.get_by_test_id("field-video_output_type")).to_have_value("VP9 (.webm)")
    expect(page.get_by_test_id("field-output_mask")).to_be_checked()
    expect(page.get_by_test_id("download-mask")).to_have_attribute("download", "dance-mask.webm")
    expect(item).to_have_attribute("aria-current", "true")


def test_video_gif_shows_as_an_image_and_prores_as_a_download(page, video_server: str, clips: dict[str, Path]) -> None:
    goto(page, video_server)
    page.get_by_test_id("file-input").set_input_files(video_file(clips["short"]))
    page.get_by_test_id("field-video_output_type").select_option("GIF (.gif)")
    run_and_wait(page)
    expect(page.get_by_test_id("result-image")).to_be_visible()
    expect(page.get_by_test_id("result-image")).to_have_attribute("src", re.compile(r"short-output\.gif$"))
    expect(page.get_by_test_id("result-video")).to_be_hidden()
    expect(page.get_by_test_id("download-image")).to_have_attribute("download", "short-output.gif")
    expect(page.get_by_test_id("tab-mask")).to_be_disabled()  # no output_mask
    expect(page.get_by_test_id("download-mask")).to_have_attribute("aria-disabled", "true")

    page.get_by_test_id("field-video_output_type").select_option("PRORES4444 (.mov)")
    run_and_wait(page)
    note = page.get_by_test_id("video-note")
    expect(note).to_be_visible()
    expect(note).to_have_text("ProRes MOV does not play in browsers: download it below.")
    expect(page.get_by_test_id("error")).to_be_hidden()
    expect(page.get_by_test_id("result-video")).to_be_hidden()
    expect(page.get_by_test_id("download-image")).to_have_attribute("download", "short-output.mov")
    with page.expect_download() as info:
        page.get_by_test_id("download-image").click()
    assert info.value.suggested_filename == "short-output.mov"
    expect(page.get_by_test_id("facts")).to_contain_text("video/quicktime")


def test_broken_video_is_explained(page, console: Console, video_server: str, clips: dict[str, Path]) -> None:
    console.allow(422)
    goto(page, video_server)
    page.get_by_test_id("file-input").set_input_files(video_file(clips["broken"]))
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Failed", timeout=RUN_TIMEOUT)
    expect(page.get_by_test_id("error-title")).to_have_text("Invalid input")
    expect(page.get_by_test_id("error-body")).to_contain_text("Video")
    expect(page.get_by_test_id("image-error")).to_be_visible()
    expect(page.get_by_test_id("dropzone")).to_have_attribute("aria-invalid", "")
    expect(page.get_by_test_id("frame-progress")).to_be_hidden()


def test_cancel_a_queued_video(page, make_server: Callable[..., str], clips: dict[str, Path]) -> None:
    url = make_server(start_worker=False)  # nothing runs: the request stays in the queue
    goto(page, url)
    page.get_by_test_id("file-input").set_input_files(video_file(clips["short"]))
    page.get_by_test_id("run").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("In queue", timeout=10_000)
    page.get_by_test_id("cancel").click()
    expect(page.get_by_test_id("status-pill")).to_have_text("Cancelled", timeout=10_000)
    expect(page.get_by_test_id("error-title")).to_have_text("Cancelled")
    expect(page.get_by_test_id("cancel")).to_be_hidden()
    item = page.get_by_test_id("history-item").first
    expect(item).to_contain_text("Cancelled")
    expect(item).to_contain_text("Video")


def test_no_console_errors(page, console: Console, open_server: str) -> None:
    """Runs last: nothing in this module logged a console error or threw, and a tour of the UI is clean."""
    goto(page, open_server)
    page.get_by_test_id("file-input").set_input_files(png_file())
    page.get_by_test_id("image-url").focus()
    page.get_by_test_id("field-model").focus()
    page.keyboard.press("Enter")  # Enter submits from a select too
    expect(page.get_by_test_id("status-pill")).to_have_text("Completed", timeout=RUN_TIMEOUT)
    for tab in ("tab-compare", "tab-mask", "tab-result"):
        page.get_by_test_id(tab).click()
    page.locator(".swatch[data-bg=black]").click()
    page.get_by_test_id("zoom").fill("4")
    page.get_by_test_id("stage").focus()
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("0")
    page.get_by_test_id("history-refresh").click()
    page.get_by_test_id("history-item").first.click()
    page.get_by_test_id("clear-image").click()
    page.wait_for_timeout(200)
    assert not console.unexpected()
    assert not ALL_PROBLEMS, ALL_PROBLEMS
