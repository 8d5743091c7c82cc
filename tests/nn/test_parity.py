"""Parity with the official BiRefNet code: seeded weights written to real checkpoint files, loaded
through the public ``bgone.load_model``, float32 logits within 2e-3 of the official outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import bgone
from bgone.weights.checkpoints import build_model
from conftest import CASES, load_case, native_dtypes

TOLERANCE = 2e-3

# (case, file format, key prefix). Every case runs; the small ones through every file layout.
LAYOUTS = [
    ("lite_256", "pth", ""),
    ("lite_256", "safetensors", ""),
    ("lite_256", "pth", "module."),
    ("lite_256", "pth", "_orig_mod."),
    ("lite_256", "pth", "module._orig_mod."),
    ("lite_256", "safetensors", "module."),
    ("lite_256", "wrapped", ""),
    ("lite_192x320", "safetensors", ""),
    ("lite_legacy_256", "pth", ""),
    ("pvt_b2_256", "pth", "module."),
    ("v0_lite_256", "safetensors", ""),
    ("large_256", "safetensors", "_orig_mod."),
    ("v0_large_256", "pth", "module."),
]


def write_checkpoint(state: dict[str, torch.Tensor], directory: Path, fmt: str, prefix: str) -> Path:
    prefixed = {prefix + k: v for k, v in state.items()}
    if fmt == "safetensors":
        path = directory / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in prefixed.items()}, str(path))
    elif fmt == "wrapped":
        path = directory / "weights.pth"
        torch.save({"epoch": 3, "state_dict": prefixed}, path)
    else:
        path = directory / "weights.pth"
        torch.save(prefixed, path)
    return path


def test_every_case_is_covered() -> None:
    assert {case for case, _, _ in LAYOUTS} == set(CASES)


@pytest.mark.parametrize(
    ("case_name", "fmt", "prefix"), LAYOUTS, ids=[f"{c}-{f}-{p or 'plain'}" for c, f, p in LAYOUTS]
)
def test_logits_match_official(case_name: str, fmt: str, prefix: str, tmp_path: Path, seeded_state) -> None:
    case = load_case(case_name)
    path = write_checkpoint(seeded_state(case.arch, case.seed), tmp_path, fmt, prefix)
    model = bgone.load_model(path, device="cpu", patch_order=case.patch_order)
    assert (model.arch.backbone, model.arch.design) == (case.backbone, case.design)
    with torch.inference_mode():
        logits = model(case.image)
    assert logits.shape == (1, 1, *case.logits.shape)
    diff = np.abs(logits[0, 0].numpy() - case.logits).max()
    assert diff <= TOLERANCE, f"{case_name}: max |diff| {diff:.2e}"


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_official_formulation_matches_too(case_name: str, seeded_state) -> None:
    """With the fast paths off (grid_sample sampling, concatenated ASPP, NCHW maps: the baseline the
    benchmarks time), every case matches the official logits as well, and so does the fast path fed
    a plain NCHW input with NCHW weights."""
    case = load_case(case_name)
    model = build_model(seeded_state(case.arch, case.seed), patch_order=case.patch_order)
    with torch.inference_mode():
        fast = model(case.image)[0, 0].numpy()
        model.set_fast_paths(False)
        official = model(case.image)[0, 0].numpy()
    assert np.abs(official - case.logits).max() <= TOLERANCE
    assert np.abs(fast - case.logits).max() <= TOLERANCE


@pytest.mark.parametrize("case_name", ["lite_256", "lite_legacy_256"])
def test_the_other_patch_order_changes_the_output(case_name: str, seeded_state) -> None:
    """The patch order is not a no-op: the wrong one moves the logits far outside the tolerance."""
    case = load_case(case_name)
    wrong = "legacy" if case.patch_order == "einops" else "einops"
    model = build_model(seeded_state(case.arch, case.seed), patch_order=wrong)
    with torch.inference_mode():
        diff = np.abs(model(case.image)[0, 0].numpy() - case.logits).max()
    assert diff > 0.05


def test_set_patch_order_switches_without_reloading(seeded_state) -> None:
    case = load_case("lite_legacy_256")
    model = build_model(seeded_state(case.arch, case.seed), patch_order="einops")
    model.set_patch_order("legacy")
    with torch.inference_mode():
        diff = np.abs(model(case.image)[0, 0].numpy() - case.logits).max()
    assert diff <= TOLERANCE


def test_batch_equals_single_images(seeded_state) -> None:
    case = load_case("lite_192x320")
    model = build_model(seeded_state(case.arch, case.seed), patch_order=case.patch_order)
    other = torch.flip(case.image, dims=[-1]) * 0.7
    with torch.inference_mode():
        batched = model(torch.cat([case.image, other, case.image]))
        single = model(other)
    assert batched.shape == (3, 1, 192, 320)
    assert np.abs(batched[0, 0].numpy() - case.logits).max() <= TOLERANCE
    assert torch.allclose(batched[1], single[0], atol=1e-4)
    assert torch.allclose(batched[0], batched[2], atol=1e-5)


@pytest.mark.parametrize("size", [(32, 32), (32, 96), (160, 64)])
def test_any_multiple_of_32(size: tuple[int, int], seeded_state) -> None:
    model = build_model(seeded_state("swin_v1_t", 3))
    with torch.inference_mode():
        out = model(torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 1, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(100, 128), (128, 48), (0, 32)])
def test_sizes_that_are_not_multiples_of_32_are_refused(size: tuple[int, int], seeded_state) -> None:
    model = build_model(seeded_state("swin_v1_t", 3))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.zeros(1, 3, *size))


@pytest.mark.parametrize("dtype", native_dtypes(torch.bfloat16, torch.float16))
def test_half_precision_stays_close(dtype: torch.dtype, tmp_path: Path, seeded_state) -> None:
    case = load_case("lite_256")
    path = write_checkpoint(seeded_state(case.arch, case.seed), tmp_path, "safetensors", "")
    model = bgone.load_model(path, dtype=dtype, device="cpu", patch_order=case.patch_order)
    assert next(model.parameters()).dtype == dtype
    with torch.inference_mode():
        logits = model(case.image.to(dtype)).float()[0, 0].numpy()
    mask_diff = np.abs(1 / (1 + np.exp(-logits)) - 1 / (1 + np.exp(-case.logits))).mean() * 255
    assert mask_diff < 2.0, f"mean mask difference {mask_diff:.2f}/255"
