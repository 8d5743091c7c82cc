"""`bgone eval` on a generated labelled folder, with the seeded Swin-T checkpoint at 64x64."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from bgone.cli import app, main
from bgone.tools.evaluate import EvalConfig, build_configs, evaluate, find_pairs, load_mask
from conftest import NATIVE_BF16, synthetic_photo

runner = CliRunner()
LABELLED = ("a", "sub/b")  # images with a mask; "c" has none


def disc_mask(size: tuple[int, int]) -> Image.Image:
    """The ground truth of conftest.synthetic_photo: its disc."""
    w, h = size
    r = min(w, h) * 0.3
    mask = Image.new("L", size)
    ImageDraw.Draw(mask).ellipse([w * 0.55 - r, h * 0.5 - r, w * 0.55 + r, h * 0.5 + r], fill=255)
    return mask


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    (root / "images" / "sub").mkdir(parents=True)
    (root / "masks" / "sub").mkdir(parents=True)
    synthetic_photo(seed=1).save(root / "images" / "a.jpg")
    synthetic_photo(seed=2, width=90, height=120).save(root / "images" / "sub" / "b.png")
    synthetic_photo(seed=3).save(root / "images" / "c.jpg")
    disc_mask((150, 100)).save(root / "masks" / "a.png")
    disc_mask((90, 120)).save(root / "masks" / "sub" / "b.png")
    return root


# bfloat16 only where this CPU computes it natively (emulated, its passes would take minutes).
EVAL_DTYPES = ["float32", "bfloat16"] if NATIVE_BF16 else ["float32"]


@pytest.fixture(scope="module")
def evaluated(folder: Path, lite_checkpoint: Path) -> tuple[str, dict]:
    """One run: two dtypes of the seeded model, plus the ground truth itself as a predictions folder."""
    out = folder / "report.json"
    args = ["eval", "--images", str(folder / "images"), "--masks", str(folder / "masks")]
    args += ["--model", str(lite_checkpoint), "-r", "64", *(f"--dtype={dtype}" for dtype in EVAL_DTYPES)]
    args += ["--device", "cpu", "--predictions", str(folder / "masks"), "--per-image", "--json", str(out)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        result = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output, json.loads(out.read_text())


def test_report_has_every_configuration_and_sane_scores(evaluated: tuple[str, dict]) -> None:
    output, report = evaluated
    assert "1 image(s) without a mask skipped: c.jpg" in output
    assert report["pairs"] == 2 and report["unmatched_images"] == ["c.jpg"]
    assert report["pysodmetrics"] and report["conventions"]["F_beta2"] == 0.3
    assert [r["config"].get("dtype") for r in report["results"]] == [*EVAL_DTYPES, None]
    for result in report["results"][: len(EVAL_DTYPES)]:
        config = result["config"]
        assert config["operating_resolution"] == "64x64" and config["device"] == "cpu"
        assert config["patch_order"] in ("legacy", "einops")
        assert result["label"] == f"lite-seeded.safetensors 64x64 {config['dtype']}"
        assert result["count"] == 2 and result["failed"] == [] and result["images_per_second"] > 0
        assert [i["image"] for i in result["images"]] == ["a.jpg", "sub/b.png"]
        assert [i["size"] for i in result["images"]] == [[150, 100], [90, 120]]
        for image in result["images"]:
            assert image["operating_size"] == [64, 64] and image["resized"] is False
            n = image["size"][0] * image["size"][1]
            for name in ("S", "maxF", "meanF", "adpF", "wF", "MAE"):
                assert 0 <= image[name] <= 1, name
            for name in ("maxE", "meanE", "adpE"):
                assert 0 <= image[name] <= n / (n - 1), name
            assert image["HCE"] >= 0 and image["HCE"] == int(image["HCE"])
        summary = result["summary"]
        for name in ("S", "MAE", "wF", "HCE"):
            assert summary[name] == pytest.approx(np.mean([i[name] for i in result["images"]]), abs=1e-12)
        assert summary["maxF"] <= max(i["maxF"] for i in result["images"]) + 1e-12
        assert result["label"] in output  # the summary table, and the per-image rows below it
    assert "sub/b.png" in output and "per image" in output


def test_ground_truth_as_predictions_is_perfect(evaluated: tuple[str, dict]) -> None:
    _, report = evaluated
    gt = report["results"][-1]  # the ground truth folder, after the model configurations
    assert gt["config"] == {"predictions": gt["config"]["predictions"]} and gt["seconds"] is None
    s = gt["summary"]
    assert s["S"] == pytest.approx(1, abs=1e-9) and s["maxF"] == pytest.approx(1, abs=1e-9)
    assert s["wF"] == pytest.approx(1, abs=1e-9) and s["MAE"] == 0 and s["HCE"] == 0


def test_scores_are_those_of_the_masks_bgone_remove_writes(
    evaluated: tuple[str, dict], folder: Path, lite_checkpoint: Path, tmp_path: Path
) -> None:
    """The float32 configuration scores exactly the masks `bgone remove --mask-only --no-refine` makes."""
    _, report = evaluated
    preds = tmp_path / "preds"
    args = ["remove", str(folder / "images"), "-o", str(preds), "--mask-only", "--no-refine"]
    args += ["--model", str(lite_checkpoint), "-r", "64", "--dtype", "float32", "--device", "cpu", "-q"]
    removed = runner.invoke(app, args)
    assert removed.exit_code == 0, removed.output
    float32 = {i["image"]: i for i in report["results"][0]["images"]}
    for key, image in zip(LABELLED, ("a.jpg", "sub/b.png"), strict=True):
        pred = np.asarray(Image.open(preds / f"{key}.png"), dtype=np.float64)
        pred = (pred - pred.min()) / (pred.max() - pred.min())  # the per-image min-max normalisation
        gt = np.asarray(Image.open(folder / "masks" / f"{key}.png")) > 128
        assert float32[image]["MAE"] == pytest.approx(np.abs(pred - gt).mean(), abs=1e-12)

    args = ["eval", "--images", str(folder / "images"), "--masks", str(folder / "masks")]
    again = runner.invoke(app, [*args, "--predictions", str(preds), "--json", "-", "-q"])
    assert again.exit_code == 0, again.output
    scored = json.loads(again.stdout[again.stdout.index("{") :])["results"][0]["images"]
    for row in scored:
        expected = float32[row["image"]]
        for name in report["metrics"]:
            assert row[name] == pytest.approx(expected[name], abs=1e-12), name


def test_prediction_folders_resized_cutouts_and_missing_files(folder: Path, tmp_path: Path) -> None:
    preds, empty = tmp_path / "preds", tmp_path / "empty"
    (preds / "sub").mkdir(parents=True)
    empty.mkdir()
    gt_a = Image.open(folder / "masks" / "a.png")
    gt_a.resize((300, 200), Image.Resampling.NEAREST).save(preds / "a.webp", lossless=True)  # twice the size
    cutout = synthetic_photo(seed=2, width=90, height=120).convert("RGBA")
    cutout.putalpha(Image.open(folder / "masks" / "sub" / "b.png"))
    cutout.save(preds / "sub" / "b.mask.png")  # `bgone remove --mask` naming; an RGBA file: its alpha is used
    out = tmp_path / "r.json"
    args = ["eval", "--images", str(folder / "images"), "--masks", str(folder / "masks"), "-q"]
    args += ["--predictions", str(preds), "--predictions", str(empty), "--json", str(out), "--no-hce"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output  # the empty folder's images failed
    assert "failed" in result.output and "no prediction named sub/b" in result.output
    report = json.loads(out.read_text())
    assert "HCE" not in report["metrics"]
    scored, missing = report["results"]
    assert [(i["image"], i["resized"]) for i in scored["images"]] == [("a.jpg", True), ("sub/b.png", False)]
    assert scored["images"][1]["MAE"] == 0 and scored["images"][1]["S"] == pytest.approx(1, abs=1e-9)
    assert scored["images"][0]["MAE"] < 0.02 and scored["images"][0]["S"] > 0.97
    assert missing["count"] == 0 and missing["summary"] == {} and len(missing["failed"]) == 2


def test_pairs_mirror_sub_folders(tmp_path: Path) -> None:
    images, masks = tmp_path / "im", tmp_path / "gt"
    for path in ("x.jpg", "d/y.webp", "d/e/z.png", "lonely.jpg", ".hidden.jpg", "notes.txt"):
        (images / path).parent.mkdir(parents=True, exist_ok=True)
        (images / path).write_bytes(b"")
    for path in ("x.png", "x.jpg", "d/y.bmp", "d/e/z.png", "z.png"):
        (masks / path).parent.mkdir(parents=True, exist_ok=True)
        (masks / path).write_bytes(b"")
    dataset = find_pairs(images, masks)
    pairs = {
        p.key: (p.image.relative_to(images).as_posix(), p.mask.relative_to(masks).as_posix()) for p in dataset.pairs
    }
    assert pairs == {"x": ("x.jpg", "x.png"), "d/y": ("d/y.webp", "d/y.bmp"), "d/e/z": ("d/e/z.png", "d/e/z.png")}
    assert dataset.unmatched == ["lonely.jpg"]
    assert [p.key for p in find_pairs(images, masks, limit=2).pairs] == ["d/e/z", "d/y"]
    with pytest.raises(ValueError, match="1 image"):
        find_pairs(images, masks, strict=True)
    (images / "x.png").write_bytes(b"")
    with pytest.raises(ValueError, match="share the name 'x'"):
        find_pairs(images, masks)
    with pytest.raises(ValueError, match="different folders"):
        find_pairs(images, images)
    with pytest.raises(ValueError, match="none of the"):
        find_pairs(images / "d" / "e", tmp_path)


def test_masks_are_read_the_way_they_are_stored(tmp_path: Path) -> None:
    binary = np.zeros((4, 6), np.uint8)
    binary[1:3, 2:5] = 1
    Image.fromarray(binary).save(tmp_path / "ones.png")  # 0/1 labels
    assert load_mask(tmp_path / "ones.png").max() == 255
    Image.fromarray(binary.astype(np.uint16) * 65535).save(tmp_path / "deep.png")  # 16-bit
    assert set(np.unique(load_mask(tmp_path / "deep.png"))) == {0, 255}
    rgba = Image.new("RGBA", (6, 4), (10, 200, 30, 0))
    rgba.putpixel((0, 0), (10, 200, 30, 77))
    rgba.save(tmp_path / "cut.png")
    alpha = load_mask(tmp_path / "cut.png")
    assert alpha[0, 0] == 77 and alpha.sum() == 77
    (tmp_path / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(Exception, match="cannot read mask"):
        load_mask(tmp_path / "broken.png")


def test_configurations_are_a_checked_cross_product(tmp_path: Path) -> None:
    configs = build_configs(["lite", "general"], ["1024", "2048x2048"], ["float32", "bf16"], ["legacy"], [tmp_path])
    assert len(configs) == 2 * 2 * 2 + 1
    assert configs[0] == EvalConfig("lite", "1024", "float32", "legacy")
    assert configs[1] == EvalConfig("lite", "2048x2048", "float32", "legacy")  # resolution varies fastest
    assert configs[-1].predictions == tmp_path and configs[-1].label == f"predictions {tmp_path}"
    assert build_configs() == [EvalConfig("lite")]
    assert build_configs(predictions=[tmp_path, tmp_path]) == [EvalConfig(None, predictions=tmp_path)]
    for bad, match in (
        ({"resolutions": ["1000"]}, "multiple of 32"),
        ({"dtypes": ["float8"]}, "unknown dtype"),
        ({"patch_orders": ["sideways"]}, "patch order"),
        ({"predictions": [tmp_path / "nope"]}, "does not exist"),
    ):
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            build_configs(**bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate(tmp_path / "nope", tmp_path)


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["bgone", "eval", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_errors_are_one_line_with_usage_exit_code(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = str(folder / "images"), str(folder / "masks")
    empty = tmp_path / "empty"
    empty.mkdir()
    for args, message in (
        (["--images", str(empty), "--masks", masks], "no images found"),
        (["--images", images, "--masks", masks, "--strict"], "have no mask"),
        (["--images", images, "--masks", masks, "--patch-order", "sideways"], "patch order"),
        (["--images", images, "--masks", masks, "-r", "1000"], "multiple of 32"),
        (["--images", str(tmp_path / "nope"), "--masks", masks], "does not exist"),
    ):
        code, err = _main(monkeypatch, capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)

    monkeypatch.setitem(sys.modules, "py_sod_metrics", None)
    code, err = _main(monkeypatch, capsys, "--images", images, "--masks", masks)
    assert code == 1 and "[missing_dependency]" in err and "pip install 'bgone[eval]'" in err


def test_console_script_error_has_no_traceback(folder: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bgone.cli", "eval", "--images", str(folder / "images"), "--masks", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "none of the 3 image(s)" in proc.stderr and "Traceback" not in proc.stderr
