"""``bgone eval``: score models and settings against a folder of labelled photos.

Images and ground-truth masks are paired by their path relative to their folders, without the
extension (``shoes/red.jpg`` ↔ ``shoes/red.png``); sub-folders are searched recursively. Each
configuration (model × resolution × dtype × patch order, or a folder of ready-made predictions) runs
over every pair and is scored with :mod:`bgone.metrics`; the report holds per-image scores, dataset
averages and the model's throughput.

The prediction is what ``bgone remove --mask-only --no-refine`` writes: the raw mask at the image's
size (times the input's own alpha, if any). The first frame of an animated input is used. Scores are
taken at the ground truth's size; a prediction of another size (an EXIF-rotated image whose mask was
drawn unrotated, a prediction folder made at another scale) is resized to it bilinearly and the image
is flagged ``resized``.

>>> from bgone.evaluate import EvalConfig, evaluate          # doctest: +SKIP
>>> report = evaluate("photos/", "masks/", [EvalConfig("lite"), EvalConfig("general")])  # doctest: +SKIP
>>> report.results[0].summary["S"]                           # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bgone._version import __version__
from bgone.errors import BgoneError, ImageLoadError
from bgone.imaging.frames import DecodedImage
from bgone.nn.types import PATCH_ORDERS
from bgone.pipeline.batch_files import IMAGE_EXTENSIONS
from bgone.pipeline.options import RemovalOptions
from bgone.pipeline.remover import Remover
from bgone.pipeline.resolution import Resolution
from bgone.pipeline.runtime import ModelCache
from bgone.tools.segmentation_metrics import CONVENTIONS, LOWER_IS_BETTER, MetricSet, backend, backend_version
from bgone.weights.placement import dtype_name, resolve_device, resolve_dtype

MASK_SUFFIX = ".mask"  # bgone remove --mask writes NAME.mask.png beside the cut-out
ProgressCallback = Callable[[str, int], None]  # (label of the running configuration, images just done)


@dataclass(frozen=True)
class Pair:
    key: str  # the relative path without extension, "/"-separated
    image: Path
    mask: Path


@dataclass
class Dataset:
    images_dir: Path
    masks_dir: Path
    pairs: list[Pair]
    unmatched: list[str] = field(default_factory=list)  # images (relative paths) without a mask


@dataclass(frozen=True)
class EvalConfig:
    """One thing to score: a model with its settings, or a folder of ready-made masks (``predictions``)."""

    model: str | None = "lite"
    resolution: str | None = None  # None: the model's own; "1024", "2048x2048", "dynamic"
    dtype: str = "auto"
    patch_order: str | None = None  # None: the order the checkpoint was trained with
    predictions: Path | None = None

    @property
    def label(self) -> str:
        if self.predictions is not None:
            return f"predictions {self.predictions}"
        parts = [_short_model(self.model or ""), self.resolution or "native", self.dtype]
        if self.patch_order:
            parts.append(self.patch_order)
        return " ".join(parts)


@dataclass
class ConfigResult:
    label: str
    config: dict[str, Any]
    images: list[dict[str, Any]]  # per image: "image", "mask", "size", "resized", then the metrics
    failed: list[dict[str, str]]  # {"image": ..., "error": ...}
    summary: dict[str, float]  # dataset scores (see bgone.metrics.MetricSet.summary)
    seconds: float | None = None  # time in the model (decoding and scoring excluded); None for predictions

    @property
    def images_per_second(self) -> float | None:
        if self.seconds is None or not self.images:
            return None
        return len(self.images) / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "config": self.config,
            "count": len(self.images),
            "summary": self.summary,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "failed": self.failed,
            "images": self.images,
        }


@dataclass
class EvalReport:
    dataset: Dataset
    results: list[ConfigResult]
    metrics: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "bgone": __version__,
            "pysodmetrics": backend_version(),
            "images_dir": str(self.dataset.images_dir),
            "masks_dir": str(self.dataset.masks_dir),
            "pairs": len(self.dataset.pairs),
            "unmatched_images": self.dataset.unmatched,
            "metrics": list(self.metrics),
            "conventions": dict(CONVENTIONS),
            "results": [result.to_dict() for result in self.results],
        }


def _short_model(model: str) -> str:
    path = Path(model)
    return path.name if len(path.parts) > 1 or path.suffix in (".pth", ".safetensors", ".bin", ".pt") else model


# Dataset ----------------------------------------------------------------------------------------


def _index(root: Path, what: str) -> dict[str, list[Path]]:
    if not root.exists():
        raise FileNotFoundError(f"{what} folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"{what} must be a folder: {root}")
    found: dict[str, list[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            found.setdefault(path.relative_to(root).with_suffix("").as_posix(), []).append(path)
    return found


def _pick(index: dict[str, list[Path]], key: str, what: str) -> Path | None:
    """The file for ``key`` (or ``key.mask``, bgone's mask name); a PNG wins over other formats."""
    for candidate in (key, key + MASK_SUFFIX):
        paths = index.get(candidate)
        if not paths:
            continue
        if len(paths) == 1:
            return paths[0]
        pngs = [p for p in paths if p.suffix.lower() == ".png"]
        if len(pngs) == 1:
            return pngs[0]
        raise ValueError(f"several {what} files for {key}: {', '.join(p.name for p in paths)}; keep one")
    return None


def find_pairs(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    *,
    strict: bool = False,
    limit: int | None = None,
) -> Dataset:
    """Pair every image under ``images_dir`` with the mask of the same relative path and stem.

    Images without a mask are listed in ``Dataset.unmatched`` (or, with ``strict``, are an error);
    ``limit`` keeps the first N pairs in path order."""
    images_root, masks_root = Path(images_dir), Path(masks_dir)
    images = _index(images_root, "--images")
    masks = _index(masks_root, "--masks")
    if images_root.resolve() == masks_root.resolve():
        raise ValueError("--images and --masks must be different folders")
    if not images:
        raise ValueError(f"no images found in {images_root} (looked recursively for jpg, png, webp, ...)")
    pairs: list[Pair] = []
    unmatched: list[str] = []
    for key, paths in images.items():
        if len(paths) > 1:
            raise ValueError(
                f"images {', '.join(p.relative_to(images_root).as_posix() for p in paths)} share the name {key!r}, "
                "so a mask cannot tell them apart; rename one"
            )
        mask = _pick(masks, key, "mask")
        if mask is None:
            unmatched.append(paths[0].relative_to(images_root).as_posix())
        else:
            pairs.append(Pair(key, paths[0], mask))
    if strict and unmatched:
        shown = ", ".join(unmatched[:5]) + (f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else "")
        raise ValueError(f"{len(unmatched)} image(s) have no mask in {masks_root}: {shown}")
    if not pairs:
        raise ValueError(
            f"none of the {len(images)} image(s) in {images_root} has a mask in {masks_root}; masks are matched by "
            "relative path and name without extension (shoes/red.jpg -> shoes/red.png)"
        )
    if limit is not None:
        if limit < 1:
            raise ValueError("--limit must be at least 1")
        pairs = pairs[:limit]
    return Dataset(images_root, masks_root, pairs, unmatched)


def load_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask file as uint8 (H, W): the alpha channel of a transparent image (a cut-out), otherwise the
    grey level; 16-bit masks are scaled to 8 bits and masks stored as 0/1 are read as 0/255."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageLoadError(f"cannot read mask {path}: {exc}") from None
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") and image.getchannel("A").getextrema() != (255, 255):
        array = np.asarray(image.getchannel("A"))
    elif image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.max() > 255:
            values = values / 257.0
        array = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    else:
        array = np.asarray(image.convert("L"))
    if array.size and array.max() == 1:
        array = array * np.uint8(255)
    return np.ascontiguousarray(array, dtype=np.uint8)


def _fit(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, bool]:
    if pred.shape == gt.shape:
        return pred, False
    resized = Image.fromarray(pred, "L").resize((gt.shape[1], gt.shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(resized), True


# Configurations ---------------------------------------------------------------------------------


def build_configs(
    models: Sequence[str] = (),
    resolutions: Sequence[str] = (),
    dtypes: Sequence[str] = (),
    patch_orders: Sequence[str] = (),
    predictions: Sequence[str | os.PathLike[str]] = (),
) -> list[EvalConfig]:
    """The cross product model × dtype × patch order × resolution (resolution varying fastest, so a
    loaded model serves all its resolutions), then one configuration per predictions folder.

    Without models and predictions, the default model (``lite``) is scored. Every value is checked
    before anything runs (``ValueError`` with the reason)."""
    for resolution in resolutions:
        Resolution.parse(resolution)
    for dtype in dtypes:
        resolve_dtype(dtype)
    for order in patch_orders:
        if order not in PATCH_ORDERS:
            raise ValueError(f"patch order {order!r}: use {' or '.join(PATCH_ORDERS)}")
    folders = [Path(p) for p in predictions]
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"--predictions folder {folder} does not exist")
    model_list = list(models) or ([] if folders else ["lite"])
    configs = [
        EvalConfig(model, resolution, dtype, order)
        for model in model_list
        for dtype in (list(dtypes) or ["auto"])
        for order in (list(patch_orders) or [None])
        for resolution in (list(resolutions) or [None])
    ]
    configs += [EvalConfig(model=None, predictions=folder) for folder in folders]
    return list(dict.fromkeys(configs))  # the same flag given twice runs once


# Running ----------------------------------------------------------------------------------------


def _chunks(items: Sequence[Pair], size: int) -> Iterable[Sequence[Pair]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _record(
    metrics: MetricSet, pair: Pair, dataset: Dataset, pred: np.ndarray, gt: np.ndarray, extra: dict[str, Any]
) -> dict[str, Any]:
    pred, resized = _fit(pred, gt)
    scores = metrics.update(pred, gt)
    return {
        "image": pair.image.relative_to(dataset.images_dir).as_posix(),
        "mask": pair.mask.relative_to(dataset.masks_dir).as_posix(),
        "size": [int(gt.shape[1]), int(gt.shape[0])],
        "resized": resized,
        **extra,
        **scores,
    }


def _failure(pair: Pair, dataset: Dataset, exc: BaseException) -> dict[str, str]:
    return {"image": pair.image.relative_to(dataset.images_dir).as_posix(), "error": str(exc)}


def _run_predictions(config: EvalConfig, dataset: Dataset, hce: bool, progress: ProgressCallback) -> ConfigResult:
    assert config.predictions is not None
    index = _index(config.predictions, "--predictions")
    metrics = MetricSet(hce=hce)
    images: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for pair in dataset.pairs:
        try:
            path = _pick(index, pair.key, "prediction")
            if path is None:
                raise BgoneError(f"no prediction named {pair.key}.* in {config.predictions}")
            pred = load_mask(path)
            gt = load_mask(pair.mask)
            images.append(_record(metrics, pair, dataset, pred, gt, {"prediction": str(path)}))
        except (BgoneError, ValueError) as exc:
            failed.append(_failure(pair, dataset, exc))
        progress(config.label, 1)
    return ConfigResult(
        config.label,
        {"predictions": str(config.predictions)},
        images,
        failed,
        metrics.summary(),
    )


def _run_model(
    config: EvalConfig,
    dataset: Dataset,
    *,
    device: Any,
    batch_size: int,
    hce: bool,
    progress: ProgressCallback,
    cache: Any,
    show_downloads: bool,
) -> ConfigResult:
    assert config.model is not None
    remover = Remover(
        config.model,
        device=device,
        dtype=config.dtype,
        patch_order=config.patch_order,
        batch_size=batch_size,
        cache=cache,
        progress=show_downloads,
    )
    options = RemovalOptions(operating_resolution=config.resolution, refine_foreground=False, mask_only=True)
    requested = options.operating_resolution
    if isinstance(requested, tuple):
        resolution = f"{requested[0]}x{requested[1]}"
    elif requested is None and remover.native is not None:  # turned for portraits when its sides differ
        resolution = f"native {remover.native[0]}x{remover.native[1]}"
    else:
        resolution = str(requested or "dynamic")
    arch = getattr(remover.net, "arch", None)
    patch_order = getattr(arch, "patch_order", config.patch_order)
    model_name = _short_model(remover.model_name)
    label = " ".join(
        [model_name, resolution, dtype_name(remover.dtype)] + ([patch_order] if config.patch_order else [])
    )
    description = {
        "model": config.model,
        "model_name": remover.model_name,
        "resolution": config.resolution,
        "operating_resolution": resolution,
        "dtype": dtype_name(remover.dtype),
        "requested_dtype": config.dtype,
        "patch_order": patch_order,
        "device": str(remover.device),
        "batch_size": batch_size,
    }
    progress(label, 0)
    metrics = MetricSet(hce=hce)
    images: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    seconds = 0.0
    for chunk in _chunks(dataset.pairs, batch_size):
        ready: list[tuple[Pair, DecodedImage, np.ndarray]] = []
        for pair in chunk:
            try:
                decoded = remover.load(pair.image)
                first = DecodedImage([decoded.frames[0]], name=decoded.name, source_format=decoded.source_format)
                ready.append((pair, first, load_mask(pair.mask)))
            except BgoneError as exc:
                failed.append(_failure(pair, dataset, exc))
                progress(label, 1)
        if not ready:
            continue
        started = time.perf_counter()
        masks, sizes = remover.predict([item[1] for item in ready], options.operating_resolution)
        seconds += time.perf_counter() - started
        for (pair, decoded, gt), frame_masks, size in zip(ready, masks, sizes, strict=True):
            try:
                result = remover.finish(decoded, frame_masks, options, size)
                pred = np.asarray(result.mask.convert("L"))
                extra = {"operating_size": [int(size[0]), int(size[1])]}
                images.append(_record(metrics, pair, dataset, pred, gt, extra))
            except (BgoneError, ValueError) as exc:
                failed.append(_failure(pair, dataset, exc))
            progress(label, 1)
    return ConfigResult(label, description, images, failed, metrics.summary(), seconds)


def evaluate_dataset(
    dataset: Dataset,
    configs: Sequence[EvalConfig],
    *,
    device: str | None = "auto",
    batch_size: int = 1,
    hce: bool = True,
    progress: ProgressCallback | None = None,
    show_downloads: bool = True,
) -> EvalReport:
    """Score every configuration on ``dataset``; ``progress(label, n)`` is called as images finish."""
    backend()  # a missing metrics package fails before any model loads
    if batch_size < 1:
        raise ValueError("--batch-size must be at least 1")
    resolved = resolve_device(device)
    cache = ModelCache(max_models=1)  # configurations run one after another: hold one model at a time
    report = progress or (lambda label, n: None)
    results = []
    for config in configs:
        if config.predictions is not None:
            results.append(_run_predictions(config, dataset, hce, report))
        else:
            results.append(
                _run_model(
                    config,
                    dataset,
                    device=resolved,
                    batch_size=batch_size,
                    hce=hce,
                    progress=report,
                    cache=cache,
                    show_downloads=show_downloads,
                )
            )
    cache.clear()
    metric_names = MetricSet(hce=hce).names
    return EvalReport(dataset, results, metric_names)


def evaluate(
    images_dir: str | os.PathLike[str],
    masks_dir: str | os.PathLike[str],
    configs: Sequence[EvalConfig] = (EvalConfig(),),
    *,
    device: str | None = "auto",
    batch_size: int = 1,
    limit: int | None = None,
    strict: bool = False,
    hce: bool = True,
    progress: ProgressCallback | None = None,
) -> EvalReport:
    """Pair ``images_dir`` with ``masks_dir`` (see :func:`find_pairs`) and score each configuration."""
    dataset = find_pairs(images_dir, masks_dir, strict=strict, limit=limit)
    return evaluate_dataset(dataset, configs, device=device, batch_size=batch_size, hce=hce, progress=progress)


# Tables -----------------------------------------------------------------------------------------

TABLE_METRICS: tuple[str, ...] = ("S", "maxF", "meanF", "wF", "maxE", "meanE", "MAE", "HCE")


def format_score(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    if name == "HCE":
        return f"{value:.1f}"
    return f"{value:.4f}" if name == "MAE" else f"{value:.3f}"


def summary_table(report: EvalReport) -> Any:
    """A rich table: one row per configuration, dataset scores, the best of each column in bold."""
    from rich.markup import escape
    from rich.table import Table

    names = [m for m in TABLE_METRICS if m in report.metrics]
    table = Table(title=escape(f"bgone eval: {len(report.dataset.pairs)} image(s) from {report.dataset.images_dir}"))
    table.add_column("configuration", overflow="fold")
    table.add_column("images", justify="right", no_wrap=True)
    for name in names:
        table.add_column(name + (" ↓" if name in LOWER_IS_BETTER else " ↑"), justify="right", no_wrap=True)
    table.add_column("img/s", justify="right", no_wrap=True)
    scored = [r for r in report.results if r.summary]
    best = {}
    for name in names:
        values = [r.summary[name] for r in scored]
        if len(values) > 1:
            best[name] = min(values) if name in LOWER_IS_BETTER else max(values)
    for result in report.results:
        cells = []
        for name in names:
            value = result.summary.get(name)
            text = format_score(name, value)
            is_best = value is not None and name in best and format_score(name, best[name]) == text
            cells.append(f"[bold]{text}[/]" if is_best else text)
        count = f"{len(result.images)}" + (f" ({len(result.failed)} failed)" if result.failed else "")
        speed = result.images_per_second
        table.add_row(escape(result.label), count, *cells, f"{speed:.2f}" if speed is not None else "-")
    return table


def per_image_table(report: EvalReport) -> Any:
    from rich.markup import escape
    from rich.table import Table

    names = [m for m in TABLE_METRICS if m in report.metrics]
    table = Table(title="per image")
    table.add_column("configuration", overflow="fold")
    table.add_column("image", overflow="fold")
    for name in names:
        table.add_column(name, justify="right", no_wrap=True)
    for result in report.results:
        for row in result.images:
            image = row["image"] + (" (resized)" if row["resized"] else "")
            table.add_row(escape(result.label), escape(image), *(format_score(n, row.get(n)) for n in names))
    return table
