"""Dichotomous-segmentation metrics: S-measure, F-measures, E-measure, MAE and HCE.

The numbers come from PySODMetrics (``pip install 'bgone[eval]'``, import name ``py_sod_metrics``), the
implementation the DIS and BiRefNet papers' evaluation code is derived from, so scores can be compared
with published tables. This module is the only place that touches that package: the rest of bgone
sees :class:`MetricSet` and plain ``dict[str, float]``.

Conventions (those of the reference MATLAB toolbox, PySODMetrics and the DIS/BiRefNet evaluations):

- Inputs are 8-bit greyscale arrays of one size. The ground truth is binarised at ``> 128``; the
  prediction is min-max normalised per image (MATLAB's ``mapminmax``: its darkest value becomes 0 and
  its brightest 1, unless it is constant), then divided by 255.
- ``S``: S-measure (Fan et al., ICCV 2017), ``0.5 * object + 0.5 * region``; an all-background ground
  truth scores ``1 - mean(pred)``, an all-foreground one ``mean(pred)``.
- ``maxF``, ``meanF``: F-measure with β² = 0.3 of the prediction binarised at each of 256 thresholds
  (``pred >= t`` for t = 0..255); per image the maximum and the mean over thresholds. Over a dataset
  the curves are first averaged image by image, then maxed / averaged (so the dataset ``maxF`` uses one
  threshold for every image and is not the mean of the per-image ``maxF``).
- ``adpF``: F-measure (β² = 0.3) at the adaptive threshold ``min(2 * mean(pred), 1)``.
- ``wF``: weighted F-measure (Margolin et al., CVPR 2014), β² = 1; 0 for an all-background ground truth.
- ``maxE``, ``meanE``: E-measure (Fan et al., IJCAI 2018) over the same 256 thresholds, aggregated like
  the F-measures; ``adpE`` at the adaptive threshold. As in the reference code the alignment sum is
  divided by ``N - 1`` (N pixels), so a perfect mask of a tiny image scores ``N / (N - 1)``, a hair
  above 1; at photo sizes the difference is below 10⁻⁶.
- ``MAE``: mean absolute error between the normalised prediction and the binary ground truth.
- ``HCE``: human correction effort (Qin et al., ECCV 2022, the DIS benchmark's HCE_γ): the number of
  polygon control points (Ramer-Douglas-Peucker, ε = 2) and independent regions a person would need
  to fix the prediction binarised at 0.5, with errors thinner than γ = 5 relaxation steps forgiven.
  An integer per image; lower is better. The slowest metric (pure Python over contour points).

Every metric but ``MAE`` and ``HCE`` is higher-is-better and lies in [0, 1] (up to the E-measure note).
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from bgone.errors import BgoneError

METRICS: tuple[str, ...] = ("S", "maxF", "meanF", "adpF", "wF", "maxE", "meanE", "adpE", "MAE", "HCE")
LOWER_IS_BETTER = frozenset({"MAE", "HCE"})
DESCRIPTIONS: Mapping[str, str] = {
    "S": "S-measure: structural similarity of objects and regions (α = 0.5)",
    "maxF": "F-measure (β² = 0.3), best of 256 thresholds",
    "meanF": "F-measure (β² = 0.3), mean over 256 thresholds",
    "adpF": "F-measure (β² = 0.3) at the adaptive threshold 2 × mean(pred)",
    "wF": "weighted F-measure (β² = 1): errors weighted by position and distance to the object",
    "maxE": "E-measure (enhanced alignment), best of 256 thresholds",
    "meanE": "E-measure, mean over 256 thresholds",
    "adpE": "E-measure at the adaptive threshold",
    "MAE": "mean absolute error (lower is better)",
    "HCE": "human correction effort: clicks to fix the mask binarised at 0.5 (DIS, γ = 5; lower is better)",
}
F_BETA2 = 0.3
WF_BETA2 = 1.0
S_ALPHA = 0.5
HCE_RELAX = 5
HCE_EPSILON = 2.0
THRESHOLDS = 256
GT_THRESHOLD = 128  # ground truth foreground: value > 128

CONVENTIONS: Mapping[str, Any] = {
    "ground_truth": f"binarised at > {GT_THRESHOLD}",
    "prediction": "min-max normalised per image, then / 255",
    "F_beta2": F_BETA2,
    "wF_beta2": WF_BETA2,
    "S_alpha": S_ALPHA,
    "thresholds": THRESHOLDS,
    "dataset_maxF_meanF_maxE_meanE": "max / mean over thresholds of the per-image curves averaged over images",
    "adaptive_threshold": "min(2 * mean(pred), 1)",
    "E_denominator": "N - 1 pixels (reference MATLAB code)",
    "HCE": {"relax": HCE_RELAX, "epsilon": HCE_EPSILON, "binarised_at": 0.5},
}

_PACKAGE = "pysodmetrics"
_MODULE = "py_sod_metrics"


class MissingMetricsError(BgoneError):
    """PySODMetrics, which computes the metrics, is not installed."""

    error_type = "missing_dependency"


def backend() -> ModuleType:
    """The ``py_sod_metrics`` module, or a :class:`MissingMetricsError` that says how to install it."""
    try:
        return importlib.import_module(_MODULE)
    except ImportError as exc:
        raise MissingMetricsError(
            f"evaluation needs PySODMetrics, which is not installed: pip install 'bgone[eval]' ({exc})"
        ) from None


def backend_version() -> str | None:
    try:
        return importlib.metadata.version(_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def _as_mask(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D greyscale array, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (0-255) or bool, got {array.dtype}")
    return array


@dataclass(frozen=True)
class ImageScores:
    """One image's scores (``values``, keyed like :data:`METRICS`) and its F and E curves over thresholds."""

    values: dict[str, float]
    f_curve: np.ndarray  # (256,), F-measure at thresholds 255, 254, ..., 0
    e_curve: np.ndarray  # (256,), E-measure at the same thresholds


def score_image(pred: np.ndarray, gt: np.ndarray, *, hce: bool = True) -> ImageScores:
    """Every metric for one prediction against its ground truth (both uint8 or bool, same shape)."""
    sod = backend()
    pred = _as_mask(pred, "prediction")
    gt = _as_mask(gt, "ground truth")
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    # One fresh evaluator per image, read through its public get_results(): the mean over one image.
    fm = sod.FmeasureV2(metric_handlers={"f": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=F_BETA2)})
    em, sm, wfm, mae = sod.Emeasure(), sod.Smeasure(alpha=S_ALPHA), sod.WeightedFmeasure(beta=WF_BETA2), sod.MAE()
    evaluators: list[Any] = [fm, em, sm, wfm, mae]
    hce_meter = sod.HumanCorrectionEffortMeasure(relax=HCE_RELAX, epsilon=HCE_EPSILON) if hce else None
    if hce_meter is not None:
        evaluators.append(hce_meter)
    for evaluator in evaluators:
        evaluator.step(pred=pred, gt=gt)
    f = fm.get_results()["f"]
    e = em.get_results()["em"]
    f_curve = np.asarray(f["dynamic"], dtype=np.float64)
    e_curve = np.asarray(e["curve"], dtype=np.float64)
    values = {
        "S": float(sm.get_results()["sm"]),
        "maxF": float(f_curve.max()),
        "meanF": float(f_curve.mean()),
        "adpF": float(f["adaptive"]),
        "wF": float(wfm.get_results()["wfm"]),
        "maxE": float(e_curve.max()),
        "meanE": float(e_curve.mean()),
        "adpE": float(e["adp"]),
        "MAE": float(mae.get_results()["mae"]),
    }
    if hce_meter is not None:
        values["HCE"] = float(hce_meter.get_results()["hce"])
    return ImageScores(values, f_curve, e_curve)


class MetricSet:
    """Accumulates per-image scores and summarises them over the dataset.

    >>> metrics = MetricSet()                                   # doctest: +SKIP
    >>> metrics.update(pred, gt)                                # doctest: +SKIP
    {'S': 0.91, 'maxF': 0.95, ...}
    >>> metrics.summary()                                       # doctest: +SKIP
    """

    def __init__(self, *, hce: bool = True) -> None:
        backend()  # fail before any work when the package is missing
        self.hce = hce
        self.images: list[dict[str, float]] = []
        self._f_curves: list[np.ndarray] = []
        self._e_curves: list[np.ndarray] = []

    @property
    def names(self) -> tuple[str, ...]:
        return METRICS if self.hce else tuple(m for m in METRICS if m != "HCE")

    def update(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """Score one image (uint8 or bool arrays of one shape) and return its metrics."""
        scores = score_image(pred, gt, hce=self.hce)
        self.images.append(scores.values)
        self._f_curves.append(scores.f_curve)
        self._e_curves.append(scores.e_curve)
        return dict(scores.values)

    def __len__(self) -> int:
        return len(self.images)

    def summary(self) -> dict[str, float]:
        """Dataset scores: per-image means, and max/mean of the image-averaged F and E curves.

        Empty when no image was scored."""
        if not self.images:
            return {}
        out = {name: float(np.mean([image[name] for image in self.images])) for name in self.names}
        f_curve = np.mean(self._f_curves, axis=0)
        e_curve = np.mean(self._e_curves, axis=0)
        out.update(
            maxF=float(f_curve.max()),
            meanF=float(f_curve.mean()),
            maxE=float(e_curve.max()),
            meanE=float(e_curve.mean()),
        )
        return {name: out[name] for name in self.names}
