"""Running exported BiRefNet graphs with onnxruntime, behind the same pipeline as the PyTorch network.

:class:`OnnxNetwork` is called like the PyTorch model (normalised ``(B, 3, H, W)`` images → logits), so
``Remover``, ``bgone remove --backend onnx`` and the server's worker run the whole pipeline (decoding,
batching, refinement, encoding) unchanged on top of it. Graphs from ``bgone export onnx`` describe
themselves in their metadata; other BiRefNet exports (the official release's, rembg's) are read from
their input shape: a fixed size becomes the operating size, a fixed batch of 1 runs image by image,
and the last output is the mask, as the official notes say.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bgone.errors import CheckpointError, ModelError
from bgone.pipeline.resolution import DEFAULT_NATIVE, Size
from bgone.pipeline.transforms import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger("bgone")

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
BACKENDS: tuple[str, ...] = ("auto", "torch", "onnx")


@dataclass(frozen=True)
class OnnxModelInfo:
    name: str
    resolution: Size | None  # (W, H) the graph runs best at; None: the image's own size (dynamic)
    fixed_size: Size | None  # (W, H) when the graph only accepts one size
    fixed_batch: int | None  # when the graph only accepts one batch size
    sigmoid: bool  # the output is already probabilities
    dtype: str
    patch_order: str | None
    max_side: int | None
    input_name: str
    output_name: str


def resolve_backend(backend: str | None, model: str | os.PathLike[str]) -> str:
    """``auto`` picks onnx for ``.onnx`` files and torch for everything else."""
    backend = (backend or "auto").lower()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    is_onnx_file = os.fspath(model).lower().endswith(".onnx")
    if backend == "auto":
        return "onnx" if is_onnx_file else "torch"
    if backend == "onnx" and not is_onnx_file:
        raise ModelError(
            f"--backend onnx runs an exported .onnx graph, got {os.fspath(model)!r}; "
            f"make one with `bgone export onnx {os.fspath(model)} -o model.onnx` and pass that file"
        )
    if backend == "torch" and is_onnx_file:
        raise ModelError(f"{os.fspath(model)} is an ONNX graph: use --backend onnx (or auto)")
    return backend


def providers_for(device: str | torch.device | None) -> list[str]:
    """onnxruntime execution providers for a bgone device name (cpu, cuda, cuda:N, auto)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    kind = str(device or "auto").split(":")[0].lower()
    if kind == "cpu":
        return [CPU_PROVIDER]
    if kind == "cuda":
        if CUDA_PROVIDER not in available:
            raise ModelError(
                "device cuda was asked for, but this onnxruntime has no CUDA provider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu matching your CUDA and cuDNN"
            )
        return [CUDA_PROVIDER, CPU_PROVIDER]
    if kind == "auto":
        return [CUDA_PROVIDER, CPU_PROVIDER] if CUDA_PROVIDER in available else [CPU_PROVIDER]
    raise ModelError(f"the onnx backend runs on cpu or cuda, not {device!r}")


def open_session(
    path: str | os.PathLike[str], *, providers: list[str] | tuple[str, ...] | None = None, device: Any = None
) -> Any:
    """An ``onnxruntime.InferenceSession`` that fails loudly rather than silently losing its GPU."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelError("the onnx backend needs onnxruntime: pip install 'bgone[onnx]' (or onnxruntime-gpu)") from exc
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"ONNX file not found: {path}")
    chosen = list(providers) if providers else providers_for(device)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # torch's thread count (OMP_NUM_THREADS when set); explicit: avoids thread-affinity errors in containers
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: no constant-folding notices on stderr
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=chosen)
    except Exception as exc:  # onnxruntime raises its own exception types for broken files
        raise CheckpointError(f"onnxruntime cannot load {path}: {str(exc).strip().splitlines()[0]}") from exc
    active = session.get_providers()
    if chosen[0] not in active:
        raise ModelError(f"onnxruntime did not enable {chosen[0]} for {path.name} (active: {', '.join(active)})")
    return session


class OnnxNetwork:
    """An exported BiRefNet behind the PyTorch model's call: ``net(x) -> logits``.

    ``x`` is a float tensor of normalised images ``(B, 3, H, W)``; the result is a CPU float32 tensor
    ``(B, 1, H, W)`` of logits (a graph that outputs probabilities is mapped back to logits).
    """

    def __init__(self, path: str | os.PathLike[str], *, device: Any = None, providers: list[str] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.session = open_session(self.path, providers=providers, device=device)
        self.providers: list[str] = self.session.get_providers()
        self.info = _read_info(self.path, self.session)
        self.file_bytes = self.path.stat().st_size
        data = self.path.with_name(self.path.name + ".data")
        if data.is_file():
            self.file_bytes += data.stat().st_size

    @property
    def provider(self) -> str:
        return self.providers[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        info = self.info
        batch, _, height, width = x.shape
        if info.fixed_size is not None and (width, height) != info.fixed_size:
            raise ModelError(
                f"{self.path.name} only accepts {info.fixed_size[0]}x{info.fixed_size[1]} inputs, got {width}x{height}"
            )
        if height % 32 or width % 32:
            raise ModelError(f"BiRefNet needs height and width that are multiples of 32, got {width}x{height}")
        if info.max_side is not None and max(height, width) > info.max_side:
            raise ModelError(
                f"{self.path.name} was exported for sides up to {info.max_side}, got {width}x{height}; "
                "export again with a larger --max-side"
            )
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        step = info.fixed_batch or batch
        parts = [
            self.session.run([info.output_name], {info.input_name: array[start : start + step]})[0]
            for start in range(0, batch, step)
        ]
        out = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0]).float()
        if out.dim() == 3:
            out = out.unsqueeze(1)
        if info.sigmoid:  # the pipeline applies the sigmoid itself
            out = torch.logit(out.double().clamp(1e-12, 1 - 1e-12)).float()
        return out


def _read_info(path: Path, session: Any) -> OnnxModelInfo:
    meta = session.get_modelmeta().custom_metadata_map or {}
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise CheckpointError(f"{path.name}: a BiRefNet graph has one input, this one has {len(inputs)}")
    shape = list(inputs[0].shape)
    if len(shape) != 4:
        raise CheckpointError(f"{path.name}: expected an input of shape (batch, 3, height, width), got {shape}")
    fixed_batch = shape[0] if isinstance(shape[0], int) else None
    fixed_size = (shape[3], shape[2]) if isinstance(shape[2], int) and isinstance(shape[3], int) else None
    for key, expected in (("mean", IMAGENET_MEAN), ("std", IMAGENET_STD)):
        if key in meta and not np.allclose(json.loads(meta[key]), expected):
            raise CheckpointError(f"{path.name}: normalisation {key} {meta[key]} is not ImageNet's, which bgone uses")
    resolution: Size | None
    if meta.get("resolution") == "dynamic":
        resolution = None
    elif "resolution" in meta:
        width, _, height = meta["resolution"].partition("x")
        resolution = (int(width), int(height))
    else:  # a graph exported elsewhere: its fixed size, or 1024² like most BiRefNet weights
        resolution = fixed_size or DEFAULT_NATIVE
    outputs = session.get_outputs()
    return OnnxModelInfo(
        name=meta.get("variant") or path.stem,
        resolution=resolution,
        fixed_size=fixed_size,
        fixed_batch=fixed_batch,
        sigmoid=meta.get("sigmoid") == "true",
        dtype=meta.get("dtype", "float32"),
        patch_order=meta.get("patch_order"),
        max_side=int(meta["max_side"]) if meta.get("max_side", "").isdigit() else None,
        input_name=inputs[0].name,
        output_name=outputs[-1].name,  # older official exports also return the multi-scale maps first
    )
