"""``bgone export onnx``: a BiRefNet checkpoint → an ONNX graph with dynamic batch, height and width.

The graph is captured with ``torch.export`` (symbolic shapes: batch ≥ 1, height and width any multiple
of 32 up to ``max_side``) and written by PyTorch's ONNX exporter. Deformable convolutions become
either one ONNX ``DeformConv`` node each (opset 19+, run natively by onnxruntime) or, for runtimes
without that operator, ``GridSample`` nodes (opset 16+) computing the same bilinear sampling.

The model's properties carry what a runtime needs to use the graph without bgone's registry: the
variant, the normalisation mean/std, the native resolution, the patch order, whether the output is
logits or probabilities, and the shape rules (see :data:`METADATA_KEYS`). After writing, the export
is checked with onnxruntime against the official-style PyTorch network in float32 on several sizes
and a batch of 2, and the largest logit difference is reported.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from bgone._version import __version__
from bgone.errors import BgoneError, ModelError
from bgone.pipeline.onnx_backend import open_session
from bgone.pipeline.resolution import DEFAULT_NATIVE, Resolution, Size
from bgone.pipeline.transforms import IMAGENET_MEAN, IMAGENET_STD
from bgone.weights.loader import load_model

logger = logging.getLogger("bgone.export")

DeformExport = Literal["deformconv", "gridsample"]
DEFORM_EXPORTS: tuple[str, ...] = ("deformconv", "gridsample")
EXPORT_DTYPES: tuple[str, ...] = ("float32", "float16")
DEFAULT_OPSET = 19  # the first opset with DeformConv; onnxruntime runs it on the CPU
MIN_OPSET = {"deformconv": 19, "gridsample": 16}
INPUT_NAME = "input_image"
OUTPUT_NAME = "logits"
PROBABILITY_OUTPUT_NAME = "mask"
DEFAULT_VALIDATION_SIZES: tuple[Size, ...] = ((256, 256), (320, 192))  # (W, H): a square and a tall one
FLOAT32_TOLERANCE = 1e-3
FLOAT16_TOLERANCE = 5e-2  # half precision carries ~3 decimal digits through ~100 layers
METADATA_KEYS = (
    "bgone_version",
    "variant",
    "checkpoint",
    "backbone",
    "design",
    "resolution",
    "patch_order",
    "mean",
    "std",
    "input",
    "output",
    "sigmoid",
    "dtype",
    "deform",
    "shape_rule",
    "max_side",
)


class ExportError(BgoneError):
    error_type = "export_error"


@dataclass
class ValidationRun:
    batch: int
    width: int
    height: int
    max_abs_diff: float  # against the official-style float32 PyTorch network, in logits
    onnx_seconds: float


@dataclass
class ExportReport:
    path: Path
    file_bytes: int
    metadata: dict[str, str]
    export_seconds: float
    validation: list[ValidationRun] = field(default_factory=list)
    tolerance: float | None = None

    @property
    def max_abs_diff(self) -> float | None:
        return max((run.max_abs_diff for run in self.validation), default=None)

    @property
    def passed(self) -> bool | None:
        if not self.validation or self.tolerance is None:
            return None
        return all(run.max_abs_diff <= self.tolerance for run in self.validation)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(path=str(self.path), max_abs_diff=self.max_abs_diff, passed=self.passed)
        return data


class _ExportWrapper(nn.Module):
    """The network as exported: float32 in and out whatever the weights' dtype, optional sigmoid."""

    def __init__(self, net: nn.Module, dtype: torch.dtype, sigmoid: bool) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype
        self.sigmoid = sigmoid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.to(self.dtype)).float()
        return torch.sigmoid(out) if self.sigmoid else out


def _deform_translation(opset: int) -> Callable[..., Any]:
    """onnxscript for ``bgone::deform_conv2d``: ONNX DeformConv (offsets in (dy, dx) pairs per tap, as
    torchvision and bgone store them), computed in float32 like the PyTorch formulations."""
    import onnxscript
    from onnxscript import ir

    op = onnxscript.values.Opset("", opset)
    float32 = ir.DataType.FLOAT

    def deform_conv(x: Any, offset: Any, weight: Any, mask: Any, padding: int) -> Any:
        dtype = x.dtype
        y = op.DeformConv(
            op.Cast(x, to=float32),
            op.Cast(weight, to=float32),
            op.Cast(offset, to=float32),
            None,
            op.Cast(mask, to=float32),
            pads=[padding, padding, padding, padding],
        )
        return op.Cast(y, to=dtype) if dtype is not None and dtype != float32 else y

    return deform_conv


def export_onnx(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    dtype: str = "float32",
    opset: int | None = None,
    deform: DeformExport = "deformconv",
    sigmoid: bool = False,
    patch_order: str | None = None,
    max_side: int = 4096,
    validate: bool = True,
    validation_sizes: Sequence[Size | str | int] = DEFAULT_VALIDATION_SIZES,
    validation_batch: int = 2,
    providers: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export ``source`` (registry name, fal name or checkpoint path) to ``output`` (.onnx).

    ``dtype``: weights and arithmetic in float32 or float16 (inputs and outputs stay float32).
    ``deform``: "deformconv" (ONNX DeformConv, opset ≥ 19) or "gridsample" (GridSample, opset ≥ 16).
    ``sigmoid``: output probabilities (``mask``) instead of logits (``logits``).
    ``validate``: run onnxruntime on ``validation_sizes`` (the first with ``validation_batch`` images)
    and compare with the official-style float32 PyTorch network.
    """
    say = progress or (lambda message: logger.info("%s", message))
    if dtype not in EXPORT_DTYPES:
        raise ExportError(f"dtype must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
    if deform not in DEFORM_EXPORTS:
        raise ExportError(f"deform must be one of {', '.join(DEFORM_EXPORTS)}, got {deform!r}")
    opset = opset or max(DEFAULT_OPSET, MIN_OPSET[deform])
    if opset < MIN_OPSET[deform]:
        raise ExportError(f"--deform {deform} needs opset {MIN_OPSET[deform]} or later, got {opset}")
    if max_side < 32 or max_side % 32:
        raise ExportError(f"max_side must be a positive multiple of 32, got {max_side}")
    sizes = [_parse_size(size) for size in validation_sizes]
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ExportError(f"the output file should end in .onnx, got {output.name!r}")
    _require_onnx(validate)

    say(f"Loading {os.fspath(source)}")
    net = load_model(source, device="cpu", dtype="float32", patch_order=patch_order)  # type: ignore[arg-type]
    net = net.to(memory_format=torch.contiguous_format)
    metadata = _metadata(net, source, dtype, deform, sigmoid, max_side)
    torch_dtype = torch.float16 if dtype == "float16" else torch.float32
    net.set_fast_paths(True)
    net.set_deform_method("op" if deform == "deformconv" else "grid_sample")
    wrapper = _ExportWrapper(net.to(torch_dtype), torch_dtype, sigmoid).eval()

    started = time.perf_counter()
    say("Tracing the network with symbolic batch, height and width (a few minutes)")
    program = _export_program(wrapper, max_side)
    say("Writing ONNX")
    onnx_program = _to_onnx(program, opset, sigmoid)
    model = onnx_program.model_proto
    _set_metadata(model, metadata)
    output.parent.mkdir(parents=True, exist_ok=True)
    _save(model, output)
    export_seconds = time.perf_counter() - started
    report = ExportReport(output, output.stat().st_size, metadata, export_seconds)
    say(f"Wrote {output} ({report.file_bytes / 1e6:.0f} MB) in {export_seconds:.0f} s")

    if validate:
        reference = load_model(source, device="cpu", dtype="float32", patch_order=patch_order)  # type: ignore[arg-type]
        reference.set_fast_paths(False)  # the official formulation, step by step, in float32
        report.tolerance = FLOAT32_TOLERANCE if dtype == "float32" else FLOAT16_TOLERANCE
        report.validation = validate_onnx(
            output, reference, sizes, batch=validation_batch, providers=providers, sigmoid=sigmoid, progress=say
        )
    return report


def validate_onnx(
    path: str | os.PathLike[str],
    reference: nn.Module,
    sizes: Sequence[Size],
    *,
    batch: int = 2,
    providers: Sequence[str] | None = None,
    sigmoid: bool = False,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[ValidationRun]:
    """Run the ONNX graph and ``reference`` on random normalised images; the first size runs as a batch
    of ``batch``, the others one image each. Differences are in logits (probabilities with ``sigmoid``)."""
    session = open_session(path, providers=providers)
    input_name = session.get_inputs()[0].name
    generator = torch.Generator().manual_seed(seed)
    runs = []
    for i, (width, height) in enumerate(sizes):
        n = batch if i == 0 else 1
        x = torch.randn(n, 3, height, width, generator=generator)
        started = time.perf_counter()
        got = session.run(None, {input_name: x.numpy()})[0]
        seconds = time.perf_counter() - started
        with torch.inference_mode():
            want = reference(x).float()
        if sigmoid:
            want = torch.sigmoid(want)
        diff = float(np.abs(got.astype(np.float64) - want.numpy().astype(np.float64)).max())
        if progress:
            progress(f"Checked {n}x3x{height}x{width}: max |difference| {diff:.2e} ({seconds:.1f} s in onnxruntime)")
        runs.append(ValidationRun(n, width, height, diff, seconds))
    return runs


def _parse_size(size: Size | str | int) -> Size:
    try:
        parsed = Resolution.parse(size)
    except ValueError as exc:
        raise ExportError(f"validation size: {exc}") from exc
    if parsed.size is None:
        raise ExportError(f"validation sizes must be WxH or one side, got {size!r}")
    return parsed.size


def _require_onnx(validate: bool) -> None:
    missing = [name for name in ("onnx", "onnxscript") if not _importable(name)]
    if validate and not _importable("onnxruntime"):
        missing.append("onnxruntime")
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(missing)}: pip install 'bgone[onnx]' "
            "(or onnxruntime-gpu instead of onnxruntime for CUDA)"
        )


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _metadata(net: nn.Module, source: Any, dtype: str, deform: str, sigmoid: bool, max_side: int) -> dict[str, str]:
    variant = getattr(net, "variant", None)
    resolution = getattr(variant, "resolution", None) if variant is not None else DEFAULT_NATIVE
    arch = net.arch  # type: ignore[attr-defined]
    return {
        "bgone_version": __version__,
        "variant": variant.name if variant is not None else "",
        "checkpoint": Path(str(getattr(net, "checkpoint_path", source))).name,
        "backbone": arch.backbone,
        "design": arch.design,
        # (width x height); "dynamic": the image's own size rounded to /32, as the dynamic weights expect
        "resolution": "dynamic" if resolution is None else "{}x{}".format(*resolution),
        "patch_order": arch.patch_order,
        "mean": json.dumps(list(IMAGENET_MEAN)),
        "std": json.dumps(list(IMAGENET_STD)),
        "input": f"{INPUT_NAME}: float32 (batch, 3, height, width), RGB scaled to [0, 1] then (x - mean) / std",
        "output": f"{PROBABILITY_OUTPUT_NAME if sigmoid else OUTPUT_NAME}: float32 (batch, 1, height, width), "
        + ("probabilities" if sigmoid else "logits (apply a sigmoid)"),
        "sigmoid": "true" if sigmoid else "false",
        "dtype": dtype,
        "deform": deform,
        "shape_rule": "height and width: multiples of 32",
        "max_side": str(max_side),
    }


def _export_program(wrapper: nn.Module, max_side: int) -> torch.export.ExportedProgram:
    # The example has batch 2 (a size-1 example would pin the batch to 1), height and width that differ,
    # odd multiples of 32 (no size special-cased to an even one) and large enough that every stage of
    # both backbone passes has several attention windows per side (none special-cased to one window).
    example = torch.zeros(2, 3, 544, 608, dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1024)
    height = 32 * torch.export.Dim("height_32", min=1, max=max_side // 32)
    width = 32 * torch.export.Dim("width_32", min=1, max=max_side // 32)
    try:
        with torch.no_grad():
            return torch.export.export(
                wrapper, (example,), dynamic_shapes={"x": {0: batch, 2: height, 3: width}}, strict=False
            )
    except Exception as exc:  # torch.export's errors are long; the first line says what failed
        raise ExportError(f"torch.export could not capture the network: {str(exc).splitlines()[0]}") from exc


def _to_onnx(program: torch.export.ExportedProgram, opset: int, sigmoid: bool) -> Any:
    import warnings

    translation = {torch.ops.bgone.deform_conv2d.default: _deform_translation(opset)}
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return torch.onnx.export(
                program,
                dynamo=True,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[PROBABILITY_OUTPUT_NAME if sigmoid else OUTPUT_NAME],
                custom_translation_table=translation,
                optimize=False,
                verify=False,
                verbose=False,
            )
        except Exception as exc:
            raise ExportError(f"the ONNX exporter failed: {str(exc).splitlines()[0]}") from exc
        finally:
            exporter_log.setLevel(level)


def _set_metadata(model: Any, metadata: dict[str, str]) -> None:
    import onnx

    model.producer_name = "bgone"
    model.producer_version = __version__
    model.doc_string = "BiRefNet exported by bgone; see the metadata for inputs, outputs and shape rules"
    onnx.helper.set_model_props(model, metadata)


def _save(model: Any, path: Path) -> None:
    """Write atomically; graphs over protobuf's 2 GB limit keep their weights in ``<name>.data``."""
    import onnx

    temporary = path.with_name(path.name + ".part")
    large = model.ByteSize() > 2**31 - 2**20
    try:
        onnx.save_model(
            model,
            str(temporary),
            save_as_external_data=large,
            all_tensors_to_one_file=True,
            location=path.name + ".data",
        )
        os.replace(temporary, path)
    except Exception as exc:
        temporary.unlink(missing_ok=True)
        raise ModelError(f"could not write {path}: {exc}") from exc


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The bgone properties of an exported graph (empty for graphs made elsewhere)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}
