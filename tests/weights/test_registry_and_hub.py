"""The registry, the fal name maps, and getting weights from disk, the HF cache or a URL."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import bgone
from bgone import settings
from bgone.nn.birefnet import ArchConfig, BiRefNet
from bgone.weights import hub, registry, variants
from bgone.weights.variants import Variant
from conftest import key_spec

FAL_V1 = {"General Use (Light)", "General Use (Heavy)", "Portrait"}
FAL_V2 = {
    "General Use (Light)",
    "General Use (Light 2K)",
    "General Use (Heavy)",
    "Matting",
    "Portrait",
    "General Use (Dynamic)",
}
ZOO = {
    "general",
    "lite",
    "lite-2k",
    "hr",
    "hr-matting",
    "512x512",
    "matting",
    "lite-matting",
    "portrait",
    "dynamic",
    "dynamic-matting",
    "dis",
    "hrsod",
    "cod",
    "massive",
    "legacy",
}


def test_registry_holds_the_whole_zoo_and_the_fal_files() -> None:
    names = {v.name for v in registry.REGISTRY}
    assert names >= ZOO
    assert {v.hf_filename for v in registry.REGISTRY} >= {
        "BiRefNet-DIS_ep580.pth",
        "BiRefNet-massive-epoch_240.pth",
        "BiRefNet-portrait-TR_P3M_10k-epoch_120.pth",
    }
    for variant in registry.REGISTRY:
        assert variant.hf_url or variant.release_url, variant.name
        assert variant.patch_order in ("einops", "legacy")
        assert variant.sha256 is None or len(variant.sha256) == 64


def test_fal_maps_cover_both_endpoints() -> None:
    assert set(settings.model_names("v1")) == FAL_V1
    assert set(settings.model_names("v2")) == FAL_V2
    v2 = {fal: registry.REGISTRY.get(name).name for fal, name in settings.model_names("v2").items()}
    assert v2 == {  # as fal's pages list them, "Heavy" being BiRefNet_lite (sic)
        "General Use (Light)": "general",
        "General Use (Light 2K)": "lite-2k",
        "General Use (Heavy)": "lite",
        "Matting": "matting",
        "Portrait": "portrait",
        "General Use (Dynamic)": "dynamic",
    }
    assert registry.REGISTRY.get("v1:General Use (Light)").hf_filename == "BiRefNet-DIS_ep580.pth"
    assert registry.REGISTRY.get("v1:General Use (Light)").design == "v0"


def test_fal_map_is_overridable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGONE_MODEL_MAP", json.dumps({"v2": {"General Use (Heavy)": "hr"}}))
    assert settings.model_names("v2")["General Use (Heavy)"] == "hr"
    assert registry.REGISTRY.get("General Use (Heavy)").name == "hr"
    assert settings.model_names("v2", {"v2": {"Matting": "hr-matting"}})["Matting"] == "hr-matting"


def test_names_are_forgiving_and_errors_helpful() -> None:
    for alias in ("BiRefNet_lite", "birefnet-general-lite", "LITE", "BiRefNet-general-bb_swin_v1_tiny-epoch_232"):
        assert registry.REGISTRY.get(alias).name == "lite"
    with pytest.raises(bgone.UnknownModelError, match="Did you mean 'lite'"):
        registry.REGISTRY.get("lit")


def test_patch_order_follows_the_training_date() -> None:
    before = {"general", "lite", "lite-2k", "matting", "portrait", "dis", "hrsod", "cod", "massive", "legacy"}
    after = {"hr", "hr-matting", "dynamic"}
    for variant in registry.REGISTRY:
        if variant.name in before or variant.design == "v0":
            assert variant.patch_order == "legacy", variant.name
        if variant.name in after:
            assert variant.patch_order == "einops", variant.name


@pytest.mark.parametrize(
    ("name", "arch_name"), [("general", "swin_v1_l"), ("lite", "swin_v1_t"), ("dis-ep580", "swin_v1_l_v0")]
)
def test_variant_architecture_matches_official_keys(name: str, arch_name: str) -> None:
    variant = registry.REGISTRY.get(name)
    with torch.device("meta"):
        model = BiRefNet(ArchConfig(variant.backbone, variant.design))
    assert sorted(model.state_dict()) == sorted(k for k, _, _ in key_spec(arch_name))


def test_offline_without_file_says_which_file_to_put_where(tmp_path: Path) -> None:
    with pytest.raises(bgone.ModelNotAvailableError) as info:
        bgone.load_model("lite")
    message = str(info.value)
    model_dir = settings.model_dir()
    assert "offline" in message
    assert f"into {model_dir}/" in message
    assert (
        "lite.safetensors  <- https://huggingface.co/ZhengPeng7/BiRefNet_lite/resolve/main/model.safetensors" in message
    )
    assert (
        "BiRefNet-general-bb_swin_v1_tiny-epoch_232.pth  <- https://github.com/ZhengPeng7/BiRefNet/releases/download/v1/"
        in message
    )


def test_without_network_the_first_use_fails_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not offline mode, but no network: neither source's host resolves. The answer comes at once (no
    retries, no back-off) and still names the files to put where."""
    import socket

    monkeypatch.delenv("HF_HUB_OFFLINE")
    looked_up: list[str] = []

    def no_dns(host: str, *args: object, **kwargs: object) -> list:
        looked_up.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(hub.socket, "getaddrinfo", no_dns)
    started = time.perf_counter()
    with pytest.raises(bgone.ModelNotAvailableError) as info:
        bgone.load_model("lite")
    assert time.perf_counter() - started < 2.0
    message = str(info.value)
    assert "cannot resolve huggingface.co" in message and "cannot resolve github.com" in message
    assert "is this machine offline?" in message and f"into {settings.model_dir()}/" in message
    assert "lite.safetensors  <- https://huggingface.co/ZhengPeng7/BiRefNet_lite/resolve/main/model.safetensors" in message
    assert looked_up == ["huggingface.co", "github.com"]  # each host asked once


def test_weights_placed_in_the_model_dir_are_used(seeded_state) -> None:
    settings.model_dir().mkdir(parents=True)
    path = settings.model_dir() / "BiRefNet-general-bb_swin_v1_tiny-epoch_232.pth"
    torch.save(seeded_state("swin_v1_t", 1), path)
    model = bgone.load_model("General Use (Heavy)")  # fal's v2 name for BiRefNet_lite
    assert model.checkpoint_path == path
    assert model.variant.name == "lite"
    assert model.patch_order == "legacy"  # the order lite was trained with


def test_a_known_file_name_passed_by_path_keeps_its_variant_defaults(tmp_path: Path, seeded_state) -> None:
    path = tmp_path / "BiRefNet-general-bb_swin_v1_tiny-epoch_232.pth"
    torch.save(seeded_state("swin_v1_t", 1), path)
    assert bgone.load_model(path).patch_order == "legacy"
    other = tmp_path / "my-finetune.pth"
    torch.save(seeded_state("swin_v1_t", 1), other)
    assert bgone.load_model(other).patch_order == "einops"


def test_a_file_of_the_wrong_backbone_is_refused(seeded_state) -> None:
    settings.model_dir().mkdir(parents=True)
    # A release .pth has no published hash here, so only the structure can tell it is the wrong file.
    torch.save(seeded_state("swin_v1_t", 1), settings.model_dir() / "BiRefNet-general-epoch_244.pth")
    with pytest.raises(bgone.CheckpointError, match=r"holds a swin_v1_t checkpoint.*not the checkpoint of 'general'"):
        bgone.load_model("general")


def put_in_hf_cache(repo: str, filename: str, state: dict[str, torch.Tensor], revision: str = "main") -> Path:
    """Lay a file out exactly as huggingface_hub caches it."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = Path(settings.hf_cache_dir()) / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / revision).write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(snapshot / filename))
    return snapshot / filename


def test_weights_in_the_hugging_face_cache_are_found(seeded_state) -> None:
    path = put_in_hf_cache("ZhengPeng7/BiRefNet_lite", "model.safetensors", seeded_state("swin_v1_t", 2))
    model = bgone.load_model("lite")
    assert model.checkpoint_path == path


def test_a_file_that_fails_its_published_checksum_is_refused(seeded_state) -> None:
    put_in_hf_cache("ZhengPeng7/BiRefNet_lite-2K", "model.safetensors", seeded_state("swin_v1_t", 2))
    with pytest.raises(bgone.ChecksumMismatchError, match="does not match the published checksum of 'lite-2k'"):
        bgone.load_model("lite-2k")


def test_checksum_match_is_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    variant = Variant("x", "x", "swin_v1_t", "v1", "einops", None, "a/b", sha256=hub.sha256_of(path))
    assert hub.verify_checksum(variant, path) is True
    monkeypatch.setattr(hub, "sha256_of", lambda p: pytest.fail("hashed twice"))
    assert hub.verify_checksum(variant, path) is True


def test_custom_checkpoints_register_by_name(tmp_path: Path, seeded_state) -> None:
    path = tmp_path / "finetune.safetensors"
    save_file(dict(seeded_state("swin_v1_t", 4)), str(path))
    registry.register("my-model", path, patch_order="legacy", persist=True)
    try:
        assert bgone.load_model("my-model").patch_order == "legacy"
        assert registry.default_registry().get("my-model").path == str(path.resolve())
    finally:
        registry.REGISTRY.remove("my-model")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves one payload with HTTP Range support, counting requests."""

    payload = b""
    requests: list[str | None] = []  # noqa: RUF012

    def do_GET(self) -> None:
        rng = self.headers.get("Range")
        type(self).requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = self.payload[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server() -> Iterator[str]:
    RangeHandler.payload = bytes(range(256)) * 4096
    RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_downloads_resume_from_a_partial_file(tmp_path: Path, file_server: str) -> None:
    target = tmp_path / "w.pth"
    (tmp_path / "w.pth.part").write_bytes(RangeHandler.payload[:100_000])
    hub.download_url(file_server + "w.pth", target, progress=False)
    assert target.read_bytes() == RangeHandler.payload
    assert RangeHandler.requests == ["bytes=100000-"]
    assert not (tmp_path / "w.pth.part").exists()


def test_release_download_when_online(
    monkeypatch: pytest.MonkeyPatch, file_server: str, seeded_state, tmp_path: Path
) -> None:
    source = tmp_path / "served.pth"
    torch.save(seeded_state("swin_v1_t", 1), source)
    RangeHandler.payload = source.read_bytes()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(variants, "RELEASE", file_server)
    variant = Variant(
        "served", "served", "swin_v1_t", "v1", "legacy", (1024, 1024), None, release_filename="served.pth"
    )
    path = hub.fetch_weights(variant, progress=False)
    assert path == settings.model_dir() / "served.pth"
    assert hub.find_local(variant) == path
