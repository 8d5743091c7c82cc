"""Shared fixtures: the official parity cases, seeded stand-in checkpoints, and what this CPU computes natively.

Every test passes on every CPU this project meets (AMX, AVX512-BF16, AVX2 only): nothing assumes what dtype
"auto" resolves to, and a test that needs bfloat16 or float16 forward passes asks :func:`native` and is
skipped, saying why, where PyTorch would emulate them (tens of times slower than float32).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from bgone.weights.placement import cpu_computes_natively, dtype_name
from seeded import seeded_state_dict  # tests/seeded.py, a copy of shared/parity/seeded.py

# The suite loads dozens of models in one process; with bgone's allocator tuning that process would keep
# every peak (it trades memory for speed in a long-running server). Subprocesses inherit this too.
os.environ.setdefault("BGONE_MALLOC_TUNING", "0")

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

DATA = Path(__file__).parent / "data" / "parity"
NATIVE_BF16 = cpu_computes_natively(torch.bfloat16)


def native(dtype: torch.dtype) -> pytest.MarkDecorator:
    """Skip unless this CPU computes ``dtype`` natively (float32 always runs)."""
    return pytest.mark.skipif(
        not cpu_computes_natively(dtype),
        reason=f"{dtype_name(dtype)} is emulated on this CPU (no native instructions): its forward passes "
        "would take minutes; float32 covers the same code here",
    )


def native_dtypes(*dtypes: torch.dtype) -> list:
    """``dtypes`` as pytest params, each skipped (with the reason) where this CPU would emulate it."""
    return [pytest.param(dtype, marks=native(dtype), id=dtype_name(dtype)) for dtype in dtypes]
CASES = sorted(p.stem for p in (DATA / "cases").glob("*.json"))


@dataclass
class ParityCase:
    name: str
    arch: str
    seed: int
    patch_order: str
    image: torch.Tensor  # normalised (1, 3, H, W) float32
    logits: np.ndarray  # (H, W)

    @property
    def backbone(self) -> str:
        return self.arch.removesuffix("_v0")

    @property
    def design(self) -> str:
        return "v0" if self.arch.endswith("_v0") else "v1"


def key_spec(arch: str) -> list:
    return json.loads((DATA / "keys" / f"{arch}.json").read_text())["keys"]


def load_case(name: str) -> ParityCase:
    meta = json.loads((DATA / "cases" / f"{name}.json").read_text())
    rgb = np.asarray(Image.open(DATA / "cases" / meta["input"]).convert("RGB"), dtype=np.float32) / 255.0
    mean = np.array(meta["normalize"]["mean"], dtype=np.float32)
    std = np.array(meta["normalize"]["std"], dtype=np.float32)
    image = torch.from_numpy(((rgb - mean) / std).transpose(2, 0, 1).copy()).unsqueeze(0)
    logits = np.load(DATA / "cases" / meta["expected_logits"])
    return ParityCase(name, meta["arch"], meta["seed"], meta["patch_order"], image, logits)


@pytest.fixture(scope="session")
def seeded_state() -> callable:
    """seeded_state(arch, seed) -> state dict, cached for the session (Swin-L takes seconds to make)."""
    cache: dict[tuple[str, int], dict[str, torch.Tensor]] = {}

    def make(arch: str, seed: int) -> dict[str, torch.Tensor]:
        if (arch, seed) not in cache:
            cache[(arch, seed)] = seeded_state_dict(key_spec(arch), seed)
        return cache[(arch, seed)]

    return make


@pytest.fixture(autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's caches, never reach the network."""
    root = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("BGONE_MODEL_DIR", str(root / "models"))
    monkeypatch.setenv("BGONE_MODELS_FILE", str(root / "models.json"))
    monkeypatch.setenv("HF_HOME", str(root / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(root / "hf" / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BGONE_MODEL_MAP", raising=False)


@pytest.fixture(scope="session")
def lite_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seeded Swin-T checkpoint file, for pipeline and CLI tests at small operating sizes."""
    path = tmp_path_factory.mktemp("ckpt") / "lite-seeded.safetensors"
    from safetensors.torch import save_file

    save_file(seeded_state_dict(key_spec("swin_v1_t"), 1), str(path))
    return path


ONNX_EXPORT_TIMEOUT_S = 1200


@dataclass
class _BackgroundExport:
    process: subprocess.Popen
    folder: Path
    output: Path
    report: Path
    log: Path


def _start_lite_export() -> _BackgroundExport:
    """``bgone export onnx`` of the seeded Swin-T (the same weights as ``lite_checkpoint``) in a subprocess.

    The export takes about 3 minutes of one core (tracing and translation are single-threaded Python), so
    the suite runs other tests meanwhile."""
    from safetensors.torch import save_file

    folder = Path(tempfile.mkdtemp(prefix="bgone-onnx-export-"))
    checkpoint, output = folder / "lite-seeded.safetensors", folder / "lite.onnx"
    report, log = folder / "report.json", folder / "export.log"
    save_file(seeded_state_dict(key_spec("swin_v1_t"), 1), str(checkpoint))
    command = [sys.executable, "-m", "bgone.cli", "export", "onnx", str(checkpoint), "-o", str(output), "--json"]
    command += ["--validate-size", "96x64", "--validate-size", "64x160"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "BGONE_MODEL_DIR": str(folder / "models")}
    with open(report, "wb") as stdout, open(log, "wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    return _BackgroundExport(process, folder, output, report, log)


def _onnx_extra_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnxscript", "onnx"))


def _uses_export(item: pytest.Item) -> bool:
    return "lite_onnx" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    """The tests of the exported graph run last, so that the export (started with the service tests, whose
    servers and subprocesses leave a core idle more often than the model tests do) is done by then."""
    if _onnx_extra_installed() and any(_uses_export(item) for item in items):
        items[:] = [item for item in items if not _uses_export(item)] + [item for item in items if _uses_export(item)]
        config.stash[_WANTS_EXPORT_KEY] = True


def pytest_runtest_setup(item: pytest.Item) -> None:
    config = item.config
    wanted = config.stash.get(_WANTS_EXPORT_KEY, False) and _EXPORT_KEY not in config.stash
    if wanted and (_SERVICE_TESTS in item.path.parents or _uses_export(item)):
        config.stash[_EXPORT_KEY] = _start_lite_export()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    export = session.config.stash.get(_EXPORT_KEY, None)
    if export is not None:
        if export.process.poll() is None:
            export.process.kill()
            export.process.wait()
        shutil.rmtree(export.folder, ignore_errors=True)


_EXPORT_KEY = pytest.StashKey[_BackgroundExport]()
_WANTS_EXPORT_KEY = pytest.StashKey[bool]()
_SERVICE_TESTS = Path(__file__).resolve().parent / "service"


@pytest.fixture(scope="session")
def lite_onnx(request: pytest.FixtureRequest) -> tuple[Path, dict]:
    """The seeded Swin-T exported once through `bgone export onnx`, with the command's JSON report. Started
    in the background when the service tests begin (see :func:`_start_lite_export`); tests using it skip
    without the onnx extra."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    export = request.config.stash.get(_EXPORT_KEY, None)
    if export is None:  # collected without a test that needs it (e.g. a fixture requested dynamically)
        export = request.config.stash[_EXPORT_KEY] = _start_lite_export()
    try:
        export.process.wait(timeout=ONNX_EXPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        export.process.kill()
        pytest.fail(f"bgone export onnx took over {ONNX_EXPORT_TIMEOUT_S} s: {export.log.read_text()[-2000:]}")
    assert export.process.returncode == 0, export.log.read_text(errors="replace")[-4000:]
    return export.output, json.loads(export.report.read_text())


def synthetic_photo(width: int = 150, height: int = 100, seed: int = 0) -> Image.Image:
    """A smooth picture with a bright disc: something like a subject on a background."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    disc = ((x - width * 0.55) ** 2 + (y - height * 0.5) ** 2) < (min(width, height) * 0.3) ** 2
    base = np.stack([x / width * 180, y / height * 160, np.full_like(x, 90)], axis=-1)
    base[disc] = (230, 60, 40)
    base += rng.normal(0, 6, base.shape)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture
def make_client(tmp_path: Path, lite_checkpoint: Path) -> Iterator[Callable[..., TestClient]]:
    """make_client(data_dir=None, **settings) -> a TestClient around a full service (worker included)."""
    from fastapi.testclient import TestClient
    from service_helpers import settings_for

    from bgone.service.app import create_app

    clients: list[TestClient] = []

    def make(data_dir: Path | None = None, **overrides: object) -> TestClient:
        app = create_app(settings_for(data_dir or tmp_path / "data", lite_checkpoint, **overrides))
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)  # stops the worker, which releases its models
    gc.collect()  # apps hold reference cycles: free them now, not at some later collection


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()
