"""ONNX export (dynamic batch, height and width) and the onnxruntime backend of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import synthetic_photo

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx
import onnxruntime as ort

from bgone.cli import app
from bgone.errors import BgoneError, CheckpointError, ModelError
from bgone.nn.birefnet import DeformableConv2d
from bgone.pipeline.onnx_backend import OnnxNetwork, providers_for, resolve_backend
from bgone.pipeline.remover import Remover
from bgone.pipeline.runtime import ModelCache
from bgone.tools.onnx_export import ExportError, _to_onnx, export_onnx, read_metadata
from bgone.weights.loader import load_model

runner = CliRunner()


def test_export_report_metadata_and_dynamic_axes(lite_onnx: tuple[Path, dict]) -> None:
    path, report = lite_onnx
    assert report["passed"] is True and report["tolerance"] == 1e-3
    runs = report["validation"]
    assert [(r["batch"], r["width"], r["height"]) for r in runs] == [(2, 96, 64), (1, 64, 160)]
    assert all(r["max_abs_diff"] <= 1e-3 for r in runs)
    meta = read_metadata(path)
    assert meta == report["metadata"]
    assert meta["backbone"] == "swin_v1_t" and meta["patch_order"] == "einops" and meta["sigmoid"] == "false"
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406] and json.loads(meta["std"]) == [0.229, 0.224, 0.225]
    assert meta["resolution"] == "1024x1024" and meta["deform"] == "deformconv" and meta["dtype"] == "float32"
    model = onnx.load(str(path), load_external_data=False)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [bool(d.dim_param) for d in dims] == [True, False, True, True]  # batch, 3, height, width
    assert dims[1].dim_value == 3
    ops = {node.op_type for node in model.graph.node}
    assert "DeformConv" in ops
    assert model.graph.output[0].name == "logits"


def test_onnxruntime_matches_pytorch_on_unseen_shapes(lite_onnx: tuple[Path, dict], lite_checkpoint: Path) -> None:
    path, _ = lite_onnx
    reference = load_model(lite_checkpoint, device="cpu", dtype="float32")
    reference.set_fast_paths(False)  # the official formulation
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(7)
    for shape in [(3, 3, 32, 128), (1, 3, 224, 96), (2, 3, 160, 160)]:
        x = torch.randn(*shape, generator=generator)
        got = session.run(None, {"input_image": x.numpy()})[0]
        with torch.inference_mode():
            want = reference(x).numpy()
        assert got.shape == want.shape == (shape[0], 1, *shape[2:])
        assert np.abs(got - want).max() < 1e-3, shape


def test_remove_with_the_onnx_backend_matches_pytorch(
    lite_onnx: tuple[Path, dict], lite_checkpoint: Path, tmp_path: Path
) -> None:
    path, _ = lite_onnx
    for i in range(3):
        synthetic_photo(150 + 10 * i, 100, seed=i).save(tmp_path / f"p{i}.png")
    common = [
        str(tmp_path / "p*.png"),
        "--resolution",
        "96x64",
        "--mask-only",
        "--no-refine",
        "-q",
        "--batch-size",
        "2",
    ]
    onnx_run = runner.invoke(app, ["remove", *common, "-m", str(path), "--backend", "onnx", "-o", str(tmp_path / "o")])
    assert onnx_run.exit_code == 0, onnx_run.output
    torch_run = runner.invoke(
        app, ["remove", *common, "-m", str(lite_checkpoint), "--dtype", "float32", "-o", str(tmp_path / "t")]
    )
    assert torch_run.exit_code == 0, torch_run.output
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "o" / f"p{i}.png"), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "t" / f"p{i}.png"), dtype=np.int16)
        assert a.shape == b.shape == (100, 150 + 10 * i)
        assert np.abs(a - b).max() <= 1  # logits within 1e-3: at most one level after 8-bit rounding


def test_remover_describes_the_onnx_backend_and_caches_sessions(lite_onnx: tuple[Path, dict]) -> None:
    path, _ = lite_onnx
    cache = ModelCache()
    remover = Remover(path, device="cpu", cache=cache, progress=False)
    assert remover.backend == "onnx" and "CPUExecutionProvider" in remover.describe()
    assert remover.native == (1024, 1024)
    assert Remover(path, device="cpu", cache=cache, progress=False).net is remover.net
    assert cache.loaded_bytes() >= path.stat().st_size
    result = remover.remove(synthetic_photo(), operating_resolution=64)
    assert result.image.mode == "RGBA" and result.image.size == (150, 100)


# -- the pieces, on small modules (seconds, not minutes) ----------------------------------------


class _Deformable(torch.nn.Module):
    def __init__(self, method: str) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = DeformableConv2d(6, 5, 3)
        for p in self.conv.parameters():  # offsets of a few pixels, so that sampling really moves
            torch.nn.init.normal_(p, std=0.3)
        self.conv.deform_method = method  # type: ignore[assignment]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize(("method", "opset"), [("op", 19), ("grid_sample", 16)])
def test_deformable_convolution_exports_with_dynamic_sizes(method: str, opset: int, tmp_path: Path) -> None:
    module = _Deformable(method).eval()
    example = torch.randn(2, 6, 12, 20)
    dims = {
        "x": {
            0: torch.export.Dim("b", min=1, max=8),
            2: torch.export.Dim("h", min=2, max=64),
            3: torch.export.Dim("w", min=2, max=64),
        }
    }
    program = torch.export.export(module, (example,), dynamic_shapes=dims, strict=False)
    model = _to_onnx(program, opset, sigmoid=False).model_proto
    ops = {node.op_type for node in model.graph.node}
    assert ("DeformConv" in ops) == (method == "op") and ("GridSample" in ops) == (method == "grid_sample")
    onnx.save_model(model, str(tmp_path / "d.onnx"))
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    reference = _Deformable("gather").eval()
    for shape in [(1, 6, 9, 17), (3, 6, 24, 8)]:
        x = torch.randn(*shape)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.inference_mode():
            want = reference(x).numpy()
        assert np.abs(got - want).max() < 1e-4


class _TinySegmenter(torch.nn.Module):
    """Shaped like an older official export: fixed 1x3x64x64 input, side outputs before the mask."""

    def __init__(self, probabilities: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
        self.probabilities = probabilities

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.conv(x) * 4
        return logits[:, :, ::2, ::2], torch.sigmoid(logits) if self.probabilities else logits


def _save_static(module: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None) -> Path:
    program = torch.export.export(module.eval(), (torch.randn(1, 3, 64, 64),), strict=False)
    model = torch.onnx.export(program, dynamo=True, opset_version=19, optimize=False).model_proto
    if metadata:
        onnx.helper.set_model_props(model, metadata)
    onnx.save_model(model, str(path))
    return path


def test_a_fixed_shape_export_from_elsewhere_runs_at_its_size(tmp_path: Path) -> None:
    path = _save_static(_TinySegmenter(), tmp_path / "BiRefNet-general-epoch_244.onnx")
    net = OnnxNetwork(path, device="cpu")
    assert net.info.fixed_size == (64, 64) and net.info.fixed_batch == 1 and net.info.resolution == (64, 64)
    assert net.info.name == "BiRefNet-general-epoch_244"
    remover = Remover(path, device="cpu", batch_size=3, cache=ModelCache(), progress=False, refine_foreground=False)
    results = remover.remove_many([synthetic_photo(seed=s) for s in range(3)])  # one batch, run image by image
    assert [r.operating_size for r in results] == [(64, 64)] * 3
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        want = _TinySegmenter()(x)[1]
    assert torch.allclose(net(x), want, atol=1e-4)  # the last output is the mask
    with pytest.raises(ModelError, match="only accepts 64x64"):
        net(torch.randn(1, 3, 96, 96))


def test_a_probability_output_is_turned_back_into_logits(tmp_path: Path) -> None:
    path = _save_static(_TinySegmenter(probabilities=True), tmp_path / "p.onnx", {"sigmoid": "true"})
    net = OnnxNetwork(path, device="cpu")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        want = _TinySegmenter()(x)[1]
    got = net(x)
    assert net.info.sigmoid
    assert torch.allclose(torch.sigmoid(got), torch.sigmoid(want), atol=1e-6)


def test_clear_errors(tmp_path: Path, lite_checkpoint: Path) -> None:
    with pytest.raises(ModelError, match="bgone export onnx"):
        resolve_backend("onnx", lite_checkpoint)
    with pytest.raises(ModelError, match="use --backend onnx"):
        resolve_backend("torch", "model.onnx")
    assert resolve_backend("auto", "x/Model.ONNX") == "onnx" and resolve_backend("auto", "lite") == "torch"
    with pytest.raises(CheckpointError, match="not found"):
        OnnxNetwork(tmp_path / "missing.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(CheckpointError, match="cannot load"):
        OnnxNetwork(tmp_path / "broken.onnx")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ModelError, match="onnxruntime-gpu"):
            providers_for("cuda")
    static = _save_static(_TinySegmenter(), tmp_path / "s.onnx")
    with pytest.raises(ModelError, match="--compile"):
        Remover(static, compile=True, cache=ModelCache(), progress=False)
    with pytest.raises(ModelError, match="dtype"):
        Remover(static, dtype="bfloat16", cache=ModelCache(), progress=False)
    for kwargs, message in [
        ({"dtype": "bfloat16"}, "dtype"),
        ({"deform": "nope"}, "deform"),
        ({"deform": "deformconv", "opset": 17}, "opset 19"),
        ({"max_side": 100}, "multiple of 32"),
        ({"validation_sizes": ["100x100"]}, "multiple of 32"),
    ]:
        with pytest.raises(ExportError, match=message):
            export_onnx(lite_checkpoint, tmp_path / "x.onnx", **kwargs)
    with pytest.raises(ExportError, match=r"\.onnx"):
        export_onnx(lite_checkpoint, tmp_path / "x.bin")
    assert issubclass(ExportError, BgoneError)


def test_export_cli_errors_are_one_line(lite_checkpoint: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bgone.cli",
            "export",
            "onnx",
            str(lite_checkpoint),
            "-o",
            str(tmp_path / "m.onnx"),
            "--opset",
            "12",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "[export_error]" in proc.stderr and "opset 19" in proc.stderr
    assert "Traceback" not in proc.stderr
