"""bgone.metrics on tiny hand-made masks whose scores follow from the published formulas by hand.

Notation: N pixels, G ground-truth foreground pixels; F_t is the F-measure (β² = 0.3) of ``pred >= t``,
F = 1.3·P·R / (0.3·P + R); the curve has 256 thresholds t = 0..255 on the 8-bit scale.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from bgone.tools.segmentation_metrics import METRICS, MetricSet, MissingMetricsError, score_image

EXACT = 1e-9


def block(n: int, rows: tuple[int, int], cols: tuple[int, int], value: int = 255) -> np.ndarray:
    mask = np.zeros((n, n), np.uint8)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = value
    return mask


def f_measure(p: float, r: float) -> float:
    return 1.3 * p * r / (0.3 * p + r) if p * r else 0.0


def e_term(pred_fg: bool, gt_fg: bool, mean_pred: float, mean_gt: float) -> float:
    """Enhanced alignment of one pixel (Fan et al. 2018): φ = ((2ab / (a² + b²)) + 1)² / 4, a and b the
    de-meaned binary prediction and ground truth."""
    a, b = float(pred_fg) - mean_pred, float(gt_fg) - mean_gt
    return ((2 * a * b / (a * a + b * b)) + 1) ** 2 / 4


GT8 = block(8, (2, 6), (2, 6))  # N = 64, G = 16


def test_perfect_prediction() -> None:
    s = score_image(GT8, GT8).values
    assert set(s) == set(METRICS)
    assert s["S"] == pytest.approx(1, abs=EXACT)
    assert s["MAE"] == 0 and s["HCE"] == 0
    assert s["maxF"] == pytest.approx(1, abs=EXACT) and s["adpF"] == pytest.approx(1, abs=EXACT)
    assert s["wF"] == pytest.approx(1, abs=EXACT)
    # t = 1..255 select exactly the object (F = 1); t = 0 selects all 64 pixels: P = 16/64, R = 1.
    assert s["meanF"] == pytest.approx((255 + f_measure(0.25, 1)) / 256, abs=EXACT)
    # E sums φ over pixels and divides by N - 1 (reference code): all φ = 1 -> 64/63 at t >= 1;
    # at t = 0 (all foreground) every φ = 1/4 -> 16/63.
    assert s["maxE"] == pytest.approx(64 / 63, abs=EXACT) and s["adpE"] == pytest.approx(64 / 63, abs=EXACT)
    assert s["meanE"] == pytest.approx((255 * 64 / 63 + 16 / 63) / 256, abs=EXACT)


def test_inverted_prediction() -> None:
    s = score_image(255 - GT8, GT8).values
    assert s["MAE"] == 1
    assert s["S"] == 0  # no object similarity, negative correlation in every quadrant, clipped at 0
    # Only t = 0 (everything selected) finds the object: P = 16/64, R = 1.
    assert s["maxF"] == pytest.approx(f_measure(0.25, 1), abs=EXACT)
    assert s["meanF"] == pytest.approx(f_measure(0.25, 1) / 256, abs=EXACT)
    assert s["maxE"] == pytest.approx(16 / 63, abs=EXACT)
    assert s["adpF"] == 0
    assert s["HCE"] > 0


def test_half_of_the_object_found() -> None:
    gt = block(16, (4, 8), (4, 8))  # N = 256, G = 16
    pred = block(16, (4, 8), (4, 6))  # its left half: 8 true positives, no false positive
    s = score_image(pred, gt).values
    assert s["MAE"] == pytest.approx(8 / 256, abs=EXACT)
    # t >= 1: P = 1, R = 1/2 -> F = 0.65 / 0.8; t = 0: P = 16/256, R = 1.
    assert s["maxF"] == pytest.approx(0.8125, abs=EXACT)
    assert s["adpF"] == pytest.approx(0.8125, abs=EXACT)  # adaptive t = 2·mean = 1/16 selects the same 8
    assert s["meanF"] == pytest.approx((255 * 0.8125 + f_measure(1 / 16, 1)) / 256, abs=EXACT)
    # E at t >= 1: 8 true positives, 8 misses, 240 true negatives; means 8/256 (pred) and 16/256 (gt).
    mp, mg = 8 / 256, 16 / 256
    e = (8 * e_term(True, True, mp, mg) + 8 * e_term(False, True, mp, mg) + 240 * e_term(False, False, mp, mg)) / 255
    assert e == pytest.approx(0.800542, abs=1e-6)
    assert s["maxE"] == pytest.approx(e, abs=EXACT)
    # S = (object + region) / 2. Object: the foreground holds 8 ones and 8 zeros (mean 1/2, sample
    # std sqrt(4/15)), the background is all right: 2·0.5/(0.25 + 1 + sqrt(4/15))·(16/256) + 1·(240/256)
    # = 0.97288. Region: the image split at the object's centroid (rounded (5.5, 5.5) -> row/col 7),
    # SSIM of each quadrant weighted by area, = 0.31776.
    obj = 1 / (1.25 + np.sqrt(4 / 15)) * 16 / 256 + 240 / 256
    assert obj == pytest.approx(0.972883, abs=1e-6)
    assert s["S"] == pytest.approx((obj + 0.317757) / 2, abs=1e-6)


def test_one_false_positive_pixel_weighted_f() -> None:
    """wF (Margolin 2014, β² = 1): a background error at distance d from the object weighs
    2 - 0.5^(d/5); with the object itself exact, recall is 1 and precision G / (G + weight)."""
    gt = block(16, (4, 8), (4, 8))
    pred = gt.copy()
    pred[4, 12] = 255  # 5 pixels right of the object's last column: weight 2 - 0.5 = 1.5
    s = score_image(pred, gt).values
    precision = 16 / (16 + 1.5)
    assert s["wF"] == pytest.approx(2 * precision / (1 + precision), abs=EXACT)  # = 64/67
    assert s["maxF"] == pytest.approx(f_measure(16 / 17, 1), abs=EXACT)
    assert s["MAE"] == pytest.approx(1 / 256, abs=EXACT)
    assert s["HCE"] == 0  # an error thinner than the relaxation (γ = 5) costs no correction


def test_empty_and_full_ground_truth() -> None:
    gt = np.zeros((4, 4), np.uint8)
    pred = gt.copy()
    pred[0, :] = 128  # min-max normalised per image: 128 becomes 1
    s = score_image(pred, gt).values
    assert s["S"] == pytest.approx(1 - 4 / 16, abs=EXACT)  # all-background GT: 1 - mean(pred)
    assert s["MAE"] == pytest.approx(4 / 16, abs=EXACT)
    assert s["maxE"] == pytest.approx(12 / 15, abs=EXACT)  # all-background GT: predicted background / (N - 1)
    assert s["wF"] == 0 and s["maxF"] == 0  # undefined without foreground: 0 by convention
    full = score_image(pred, np.full((4, 4), 255, np.uint8)).values
    assert full["S"] == pytest.approx(4 / 16, abs=EXACT)  # all-foreground GT: mean(pred)


def test_hce_counts_an_isolated_blob_once_and_forgives_specks() -> None:
    gt = block(48, (4, 16), (4, 16))
    blob = gt.copy()
    blob[28:44, 28:44] = 255  # far from the object: one region to delete, no shared boundary
    assert score_image(blob, gt).values["HCE"] == 1
    speck = gt.copy()
    speck[30:33, 30:33] = 255  # 3x3: erased by the 5 relaxation steps
    assert score_image(speck, gt).values["HCE"] == 0
    assert score_image(np.zeros_like(gt), gt).values["HCE"] > 1  # a whole object to draw


def test_dataset_max_f_uses_one_threshold_for_all_images() -> None:
    """Per image both predictions reach F = 1 at some threshold, but not at the same one: the dataset
    maxF is the best of the image-averaged curve, (1 + 0.8125) / 2 for t in 129..255."""
    gt = block(16, (4, 8), (4, 8))
    a = gt.copy()
    a[10:14, 10:14] = 128  # a false positive at mid grey: exact only for t > 128
    b = gt.copy()
    b[4:8, 6:8] = 64  # half the object at low grey: exact only for t <= 64
    metrics = MetricSet(hce=False)
    assert metrics.update(a, gt)["maxF"] == pytest.approx(1, abs=EXACT)
    assert metrics.update(b, gt)["maxF"] == pytest.approx(1, abs=EXACT)
    summary = metrics.summary()
    assert len(metrics) == 2 and "HCE" not in summary
    assert summary["maxF"] == pytest.approx((1 + 0.8125) / 2, abs=EXACT)
    assert summary["MAE"] == pytest.approx(np.mean([i["MAE"] for i in metrics.images]), abs=EXACT)


def test_summary_agrees_with_pysodmetrics_accumulators() -> None:
    import py_sod_metrics as sod

    rng = np.random.default_rng(3)
    metrics = MetricSet()
    ref = {
        "S": sod.Smeasure(),
        "wF": sod.WeightedFmeasure(),
        "MAE": sod.MAE(),
        "E": sod.Emeasure(),
        "HCE": sod.HumanCorrectionEffortMeasure(),
        "F": sod.FmeasureV2({"f": sod.FmeasureHandler(with_dynamic=True, with_adaptive=True, beta=0.3)}),
    }
    for i in range(3):
        gt = block(40, (5 + i, 25 + i), (8, 30))
        pred = np.clip(gt * 0.7 + rng.normal(60, 40, gt.shape), 0, 255).astype(np.uint8)
        metrics.update(pred, gt)
        for evaluator in ref.values():
            evaluator.step(pred=pred, gt=gt)
    s = metrics.summary()
    f, e = ref["F"].get_results()["f"], ref["E"].get_results()["em"]
    assert s["S"] == pytest.approx(ref["S"].get_results()["sm"], abs=EXACT)
    assert s["wF"] == pytest.approx(ref["wF"].get_results()["wfm"], abs=EXACT)
    assert s["MAE"] == pytest.approx(ref["MAE"].get_results()["mae"], abs=EXACT)
    assert s["HCE"] == pytest.approx(ref["HCE"].get_results()["hce"], abs=EXACT)
    assert s["maxF"] == pytest.approx(f["dynamic"].max(), abs=EXACT)
    assert s["meanF"] == pytest.approx(f["dynamic"].mean(), abs=EXACT)
    assert s["adpF"] == pytest.approx(f["adaptive"], abs=EXACT)
    assert s["maxE"] == pytest.approx(e["curve"].max(), abs=EXACT)
    assert s["meanE"] == pytest.approx(e["curve"].mean(), abs=EXACT)
    assert s["adpE"] == pytest.approx(e["adp"], abs=EXACT)


def test_inputs_are_checked() -> None:
    assert score_image(GT8 > 0, GT8, hce=False).values["MAE"] == 0  # bool masks are 0/255
    with pytest.raises(ValueError, match="differ in shape"):
        score_image(GT8[:4], GT8)
    with pytest.raises(ValueError, match="uint8"):
        score_image(GT8.astype(np.float32), GT8)
    with pytest.raises(ValueError, match="2-D"):
        score_image(np.stack([GT8] * 3, axis=-1), GT8)
    assert MetricSet().summary() == {}


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "py_sod_metrics", None)  # makes the import fail
    with pytest.raises(MissingMetricsError, match=r"pip install 'bgone\[eval\]'"):
        MetricSet()
