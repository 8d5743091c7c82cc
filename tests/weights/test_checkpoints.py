"""Reading checkpoint files, detecting their architecture, and the errors users see."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import bgone
from bgone.nn.backbones.pvt import PVT_SPECS
from bgone.nn.backbones.swin import SWIN_SPECS
from bgone.nn.birefnet import ArchConfig, BiRefNet
from bgone.weights.checkpoints import detect_arch, normalize_state_dict, read_state_dict
from conftest import key_spec

# Parameter counts and state-dict sizes of the official code (shared/spec/birefnet-architecture.md §1.4).
OFFICIAL_COUNTS = {
    "swin_v1_l": (220_176_498, 754),
    "swin_v1_t": (44_313_720, 586),
    "swin_v1_b": (106_228_790, 754),
    "swin_v1_s": (65_631_624, 754),
    "pvt_v2_b2": (39_665_678, 729),
    "pvt_v2_b0": (15_774_310, 573),
}


def meta_model(arch: ArchConfig) -> BiRefNet:
    with torch.device("meta"):
        return BiRefNet(arch)


def meta_state(arch_name: str) -> dict[str, torch.Tensor]:
    return {k: torch.empty(shape, device="meta") for k, shape, _ in key_spec(arch_name)}


@pytest.mark.parametrize("arch_name", ["swin_v1_l", "swin_v1_t", "pvt_v2_b2", "swin_v1_l_v0", "swin_v1_t_v0"])
def test_state_dict_keys_and_shapes_equal_the_official(arch_name: str) -> None:
    arch = ArchConfig(arch_name.removesuffix("_v0"), "v0" if arch_name.endswith("_v0") else "v1")
    ours = [(k, list(v.shape)) for k, v in meta_model(arch).state_dict().items()]
    official = [(k, shape) for k, shape, _ in key_spec(arch_name)]
    assert sorted(ours) == sorted(official)


@pytest.mark.parametrize("backbone", sorted(OFFICIAL_COUNTS))
def test_parameter_counts_equal_the_official(backbone: str) -> None:
    model = meta_model(ArchConfig(backbone))
    params, entries = OFFICIAL_COUNTS[backbone]
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == entries


@pytest.mark.parametrize("arch_name", ["swin_v1_l", "swin_v1_t", "pvt_v2_b2", "swin_v1_l_v0", "swin_v1_t_v0"])
def test_detects_backbone_and_design_from_official_keys(arch_name: str) -> None:
    arch = detect_arch(meta_state(arch_name))
    assert arch.backbone == arch_name.removesuffix("_v0")
    assert arch.design == ("v0" if arch_name.endswith("_v0") else "v1")
    assert arch.batch_norm


@pytest.mark.parametrize("backbone", [*SWIN_SPECS, *PVT_SPECS])
@pytest.mark.parametrize("design", ["v1", "v0"])
def test_detection_round_trips_every_architecture(backbone: str, design: str) -> None:
    state = meta_model(ArchConfig(backbone, design)).state_dict()
    assert detect_arch(state) == ArchConfig(backbone, design)


def test_checkpoints_without_batch_norm_load() -> None:
    """Official training with batch_size 1 builds Identity instead of BatchNorm: no BN keys."""
    arch = ArchConfig("swin_v1_t", batch_norm=False)
    state = meta_model(arch).state_dict()
    assert not any(".bn_in." in k for k in state)
    assert detect_arch(state) == arch


def test_prefixes_and_wrappers_are_normalised() -> None:
    t = torch.zeros(1)
    raw = {"epoch": 1, "model": {"module._orig_mod.bb.x": t, "module.decoder.y": t, "note": "kept out"}}
    assert set(normalize_state_dict(raw)) == {"bb.x", "decoder.y"}


def save(state: dict[str, torch.Tensor], path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


def test_wrong_architecture_is_named(tmp_path: Path) -> None:
    resnet_like = {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 64)}
    with pytest.raises(bgone.CheckpointError, match=r"not a BiRefNet checkpoint.*conv1\.weight"):
        bgone.load_model(save(resnet_like, tmp_path / "resnet.pth"))


def test_missing_key_is_named_and_nothing_loads(tmp_path: Path, seeded_state) -> None:
    state = dict(seeded_state("swin_v1_t", 1))
    del state["decoder.ipt_blk3.conv1.bias"]
    with pytest.raises(
        bgone.CheckpointError, match=r"1 missing keys: decoder\.ipt_blk3\.conv1\.bias.*Nothing was loaded"
    ):
        bgone.load_model(save(state, tmp_path / "w.safetensors"))


def test_unexpected_key_and_wrong_shape_are_named(tmp_path: Path, seeded_state) -> None:
    state = dict(seeded_state("swin_v1_t", 1))
    state["decoder.extra_head.weight"] = torch.zeros(3)
    state["decoder.conv_out1.0.weight"] = torch.zeros(1, 99, 1, 1)
    with pytest.raises(bgone.CheckpointError) as info:
        bgone.load_model(save(state, tmp_path / "w.pth"))
    message = str(info.value)
    assert "1 unexpected keys: decoder.extra_head.weight" in message
    assert "decoder.conv_out1.0.weight: file (1, 99, 1, 1) vs model (1, 120, 1, 1)" in message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file(suffix: str, tmp_path: Path, seeded_state) -> None:
    path = save(seeded_state("swin_v1_t", 1), tmp_path / f"w{suffix}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(bgone.CheckpointError, match="truncated"):
        bgone.load_model(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(bgone.CheckpointError, match="empty"):
        bgone.load_model(tmp_path / "empty.pth")
    with pytest.raises(bgone.CheckpointError, match="not found"):
        bgone.load_model(tmp_path / "absent.safetensors")


class Payload:
    """Stands for anything a malicious pickle could carry."""


def test_arbitrary_objects_are_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"bb.patch_embed.proj.weight": torch.zeros(1), "payload": Payload()}, path)
    with pytest.raises(bgone.CheckpointError, match="never unpickles"):
        read_state_dict(path)


def test_fp16_weights_are_upcast(tmp_path: Path, seeded_state) -> None:
    """HR and 512x512 ship fp16 weights; the model still runs in the dtype asked for."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in seeded_state("swin_v1_t", 1).items()}
    model = bgone.load_model(save(state, tmp_path / "half.safetensors"))
    dtypes = collections.Counter(p.dtype for p in model.parameters())
    assert set(dtypes) == {torch.float32}
    assert model.bb.layers[0].blocks[0].attn.relative_position_index.dtype == torch.int64


def test_requested_dtype_and_eval_mode(tmp_path: Path, seeded_state) -> None:
    model = bgone.load_model(save(seeded_state("swin_v1_t", 1), tmp_path / "w.pth"), dtype="bf16")
    assert not model.training
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="unknown dtype"):
        bgone.load_model(tmp_path / "w.pth", dtype="int8")
    with pytest.raises(ValueError, match="patch_order"):
        bgone.load_model(tmp_path / "w.pth", patch_order="zigzag")  # type: ignore[arg-type]
