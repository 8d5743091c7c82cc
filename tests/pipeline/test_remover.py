"""The pipeline through its public API: bgone.remove_background, bgone.Remover, bgone.refine_foreground."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import bgone
from bgone.pipeline.remover import Remover
from bgone.pipeline.resolution import Resolution, dynamic_size
from bgone.pipeline.transforms import IMAGENET_MEAN, IMAGENET_STD
from bgone.settings import Limits
from bgone.weights.checkpoints import build_model, read_state_dict
from bgone.weights.placement import cpu_has_native_bf16, preferred_dtype
from conftest import synthetic_photo

SMALL = "96x64"  # W x H: keeps the seeded Swin-T fast


@pytest.fixture
def remover(lite_checkpoint: Path) -> Remover:
    return Remover(lite_checkpoint, device="cpu", operating_resolution=SMALL)


class StubNet(torch.nn.Module):
    """Logits +30 inside a box (fractions of the network input), -30 outside: a known mask (255 and 0)."""

    def __init__(self, box: tuple[float, float, float, float] = (0.25, 0.25, 0.75, 0.75)) -> None:
        super().__init__()
        self.box = box

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        out = torch.full((x.shape[0], 1, h, w), -30.0)
        left, top, right, bottom = self.box
        out[:, :, int(top * h) : int(bottom * h), int(left * w) : int(right * w)] = 30.0
        return out


def official_mask(model: torch.nn.Module, image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The official recipe, written out independently: PIL bilinear resize, ToTensor, Normalize,
    sigmoid, ToPILImage (mul(255).byte()), PIL resize back with the default (bicubic)."""
    resized = np.asarray(image.convert("RGB").resize(size, Image.BILINEAR), dtype=np.float32) / 255
    x = (resized - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    with torch.inference_mode():
        pred = model(torch.from_numpy(x.transpose(2, 0, 1).copy())[None])[0, 0].sigmoid()
    return Image.fromarray(pred.mul(255).byte().numpy(), "L").resize(image.size)


def official_model(checkpoint: Path) -> torch.nn.Module:
    reference = build_model(read_state_dict(checkpoint))
    reference.set_fast_paths(False)  # grid_sample sampling, concatenated ASPP, NCHW: the official steps
    return reference


def test_mask_equals_the_official_recipe(lite_checkpoint: Path) -> None:
    """With float32 forced, the fast paths (channels-last, gathered sampling, split ASPP) still give
    the official recipe's mask byte for byte."""
    remover = Remover(lite_checkpoint, device="cpu", dtype="float32", operating_resolution=SMALL)
    photo = synthetic_photo(150, 100)
    result = remover.remove(photo)
    expected = official_mask(official_model(lite_checkpoint), photo, (96, 64))
    assert np.array_equal(np.asarray(result.mask), np.asarray(expected))
    assert result.image.mode == "RGBA" and result.image.size == (150, 100)
    assert np.array_equal(np.asarray(result.image.getchannel("A")), np.asarray(expected))
    refined = bgone.refine_foreground(photo, expected)
    assert np.array_equal(np.asarray(result.image.convert("RGB")), np.asarray(refined))


def test_default_dtype_is_the_fast_one_and_stays_within_tolerance(remover: Remover, lite_checkpoint: Path) -> None:
    assert remover.dtype == preferred_dtype(torch.device("cpu"))
    assert remover.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)
    photo = synthetic_photo(160, 120)
    expected = official_mask(official_model(lite_checkpoint), photo, (96, 64))
    mask = np.asarray(remover.remove(photo).mask, dtype=np.float64)
    assert np.abs(mask - np.asarray(expected, dtype=np.float64)).mean() < 2.0  # 2/255 mean absolute difference


def test_no_refine_keeps_the_original_colours(remover: Remover) -> None:
    photo = synthetic_photo()
    image, _ = remover.remove(photo, refine_foreground=False)
    assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(photo))


def to_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["path", "bytes", "pil", "numpy", "data_uri", "file_object"])
def test_every_input_kind_gives_the_same_mask(kind: str, remover: Remover, tmp_path: Path) -> None:
    photo = synthetic_photo()
    data = to_png(photo)
    source = {
        "path": lambda: (tmp_path / "p.png").write_bytes(data) and tmp_path / "p.png",
        "bytes": lambda: data,
        "pil": lambda: photo,
        "numpy": lambda: np.asarray(photo),
        "data_uri": lambda: "data:image/png;base64," + base64.b64encode(data).decode(),
        "file_object": lambda: io.BytesIO(data),
    }[kind]()
    expected = remover.remove(photo).mask
    assert np.array_equal(np.asarray(remover.remove(source).mask), np.asarray(expected))


def test_url_input_goes_through_the_fetcher(lite_checkpoint: Path) -> None:
    photo = synthetic_photo()
    seen = []

    def fetch(url: str) -> bytes:
        seen.append(url)
        return to_png(photo)

    remover = Remover(lite_checkpoint, device="cpu", operating_resolution=SMALL, fetcher=fetch)
    result = remover.remove("https://example.com/shop/shoe.png")
    assert seen == ["https://example.com/shop/shoe.png"]
    assert result.name == "shoe" and result.image.size == photo.size


def test_exif_rotation_is_applied(remover: Remover) -> None:
    photo = synthetic_photo(120, 80)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    photo.save(buf, "JPEG", exif=exif)
    assert remover.remove(buf.getvalue()).image.size == (80, 120)


def test_transparent_input_stays_transparent(remover: Remover) -> None:
    rgba = synthetic_photo().convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, 40, 100))
    rgba.putalpha(alpha)
    result = remover.remove(rgba)
    assert np.asarray(result.mask)[:, :40].max() == 0
    assert np.asarray(result.image.getchannel("A"))[:, :40].max() == 0


def animated_gif(frames: int = 3) -> bytes:
    images = [synthetic_photo(seed=i).convert("P") for i in range(frames)]
    buf = io.BytesIO()
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:], duration=[80, 120, 160][:frames], loop=0)
    return buf.getvalue()


def test_animated_gif_round_trip(remover: Remover) -> None:
    result = remover.remove(animated_gif(3))
    assert result.is_animated and len(result.frames) == 3 and len(result.masks) == 3
    assert result.durations == [80, 120, 160]
    out = Image.open(io.BytesIO(result.encode("gif")))
    assert out.n_frames == 3
    assert out.info.get("loop") == 0
    webp = Image.open(io.BytesIO(result.encode("webp")))
    assert webp.n_frames == 3


def test_frame_limit(lite_checkpoint: Path) -> None:
    remover = Remover(lite_checkpoint, device="cpu", operating_resolution=SMALL, limits=Limits(max_frames=2))
    with pytest.raises(bgone.ImageTooLargeError, match="2"):
        remover.remove(animated_gif(3))


@pytest.fixture
def stub_remover(remover: Remover) -> Remover:
    remover.net = StubNet()
    return remover


def test_mask_only_background_and_crop(stub_remover: Remover) -> None:
    photo = synthetic_photo(200, 100)
    only = stub_remover.remove(photo, mask_only=True)
    assert only.image.mode == "L" and np.array_equal(np.asarray(only.image), np.asarray(only.mask))

    green = stub_remover.remove(photo, background="#00ff00", refine_foreground=False)
    assert green.image.mode == "RGB"
    assert green.image.getpixel((2, 2)) == (0, 255, 0)
    assert green.image.getpixel((100, 50)) == photo.getpixel((100, 50))

    cropped = stub_remover.remove(photo, crop=True)
    left, top = cropped.image.size
    assert 90 <= left <= 110 and 45 <= top <= 55  # the middle half of a 200x100 picture
    assert cropped.mask.size == cropped.image.size


def test_background_image(stub_remover: Remover) -> None:
    backdrop = Image.new("RGB", (50, 50), (10, 20, 30))
    result = stub_remover.remove(synthetic_photo(200, 100), background=backdrop, refine_foreground=False)
    assert result.image.size == (200, 100) and result.image.getpixel((1, 1)) == (10, 20, 30)


def test_jpeg_output_has_no_alpha(stub_remover: Remover) -> None:
    data = stub_remover.remove(synthetic_photo()).encode("jpeg")
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG" and decoded.mode == "RGB"


def test_batches_equal_single_images(lite_checkpoint: Path) -> None:
    photos = [synthetic_photo(150, 100, seed=s) for s in range(3)]
    # float32, whatever "auto" picks on this CPU: bf16 kernels block differently per batch size.
    options = {"device": "cpu", "dtype": "float32", "operating_resolution": SMALL}
    batched = Remover(lite_checkpoint, batch_size=2, **options).remove_many(photos)
    single = Remover(lite_checkpoint, **options)
    for photo, result in zip(photos, batched, strict=True):
        diff = np.abs(np.asarray(result.mask, np.int16) - np.asarray(single.remove(photo).mask, np.int16))
        assert diff.max() <= 1  # batched matmuls may round differently by one level


def test_one_model_per_source_device_and_dtype(lite_checkpoint: Path) -> None:
    a = Remover(lite_checkpoint, device="cpu")
    b = Remover(lite_checkpoint, device="cpu")
    c = Remover(lite_checkpoint, device="cpu", dtype="float32")
    d = Remover(lite_checkpoint, device="cpu", dtype="float16")
    assert a.net is b.net and c.net is not d.net
    # "auto" resolves before the cache lookup: to bfloat16 or float32, depending on this CPU.
    assert (a.net is c.net) == (a.dtype == torch.float32)
    assert "cpu" in a.describe()


def test_remove_background_function(lite_checkpoint: Path) -> None:
    image, mask = bgone.remove_background(
        synthetic_photo(), model=lite_checkpoint, operating_resolution=64, device="cpu", output_mask=True
    )
    assert image.mode == "RGBA" and mask.mode == "L" and image.size == mask.size == (150, 100)


def test_resolutions_are_parsed_once_into_one_type() -> None:
    assert Resolution.parse("2048x2048") == Resolution.parse(2048) == Resolution.fixed(2048)
    assert Resolution.parse("2560x1440").size == (2560, 1440) and str(Resolution.parse((2560, 1440))) == "2560x1440"
    assert Resolution.parse(None) == Resolution.parse("native") == Resolution.native()
    assert Resolution.parse("dynamic") == Resolution.parse("auto") == Resolution.dynamic()
    assert str(Resolution.parse("dynamic:1024")) == "dynamic:1024" and str(Resolution.dynamic()) == "dynamic"
    assert Resolution.parse("dynamic:9999").cap == 2304  # the dynamic models' largest training size
    assert Resolution.parse(Resolution.fixed(64)) == Resolution.fixed(64)
    for bad in ("1000x1000", "abc", "0", "-32", "dynamic:8", True):
        with pytest.raises(ValueError, match=r"multiple of 32|not WxH|at least 32"):
            Resolution.parse(bad)
    # Dynamic: own size floored to /32, longer side capped at 2304.
    assert dynamic_size((1000, 700)) == (992, 672)
    assert dynamic_size((4608, 3000)) == (2304, 1472)
    assert Resolution.native().operating_size((1000, 700), None) == (992, 672)
    # Light 2K runs at 2560x1440 (W x H), turned for portrait images; an explicit request is used as is.
    assert Resolution.native().operating_size((4000, 3000), (2560, 1440)) == (2560, 1440)
    assert Resolution.native().operating_size((3000, 4000), (2560, 1440)) == (1440, 2560)
    assert Resolution.fixed(2560, 1440).operating_size((3000, 4000), (2560, 1440)) == (2560, 1440)
    assert Resolution.fixed(2048).operating_size((3000, 4000), (1024, 1024)) == (2048, 2048)
    assert Resolution.parse("dynamic:1024").operating_size((4000, 3000), (1024, 1024)) == (1024, 768)


def test_a_server_cap_applies_to_every_kind_of_resolution() -> None:
    assert Resolution.fixed(2048).capped(512) == Resolution.fixed(512)
    assert Resolution.fixed(2560, 1440).capped(1000) == Resolution.fixed(992, 992)  # floored to /32
    assert Resolution.native().capped(512, (2560, 1440)) == Resolution.fixed(512, 512)
    assert Resolution.native().capped(4096, (2560, 1440)) == Resolution.fixed(2560, 1440)
    assert Resolution.native().capped(512, None) == Resolution.dynamic(512)  # a dynamic model
    assert Resolution.dynamic(2048).capped(512) == Resolution.dynamic(512)
    assert Resolution.fixed(64).capped(None) == Resolution.fixed(64)


def test_model_cache_evicts_least_recently_used_beyond_its_budget(lite_checkpoint: Path, tmp_path: Path) -> None:
    from bgone.pipeline.runtime import ModelCache

    other = tmp_path / "other.safetensors"
    other.write_bytes(lite_checkpoint.read_bytes())
    cache = ModelCache(max_models=5, max_bytes=200 * 1024 * 1024)  # one Swin-T is ~177 MB in float32
    first = cache.get(str(lite_checkpoint), torch.device("cpu"), torch.float32)
    cache.get(str(other), torch.device("cpu"), torch.float32)
    assert len(cache) == 1  # the first was evicted to stay in budget
    assert cache.get(str(lite_checkpoint), torch.device("cpu"), torch.float32) is not first


class CompiledSpy(torch.nn.Module):
    """Stands in for torch.compile's result: records how it is called and runs the real model."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.variant = getattr(model, "variant", None)
        self.grad_modes: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grad_modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return self.model(x)


def test_compile_option_compiles_once_and_runs_under_no_grad(lite_checkpoint: Path, monkeypatch) -> None:
    """Frozen compiled graphs cannot take inference-mode tensors: a compiled model runs under no_grad."""
    from bgone.pipeline.runtime import ModelCache

    calls: list[dict[str, object]] = []

    def fake_compile(model: torch.nn.Module, **kwargs: object) -> torch.nn.Module:
        calls.append(kwargs)
        return CompiledSpy(model)

    monkeypatch.setattr(torch, "compile", fake_compile)
    cache = ModelCache()
    compiled = Remover(lite_checkpoint, device="cpu", dtype="float32", compile=True, cache=cache)
    again = Remover(lite_checkpoint, device="cpu", dtype="float32", compile=True, cache=cache)
    plain = Remover(lite_checkpoint, device="cpu", dtype="float32", cache=cache)
    assert calls == [{"mode": None, "dynamic": False}] and again.net is compiled.net
    assert isinstance(compiled.net, CompiledSpy) and not isinstance(plain.net, CompiledSpy)
    photo = synthetic_photo(96, 64)
    mask = compiled.remove(photo, operating_resolution=SMALL).mask
    assert compiled.net.grad_modes == [(False, False)]
    assert np.array_equal(np.asarray(mask), np.asarray(plain.remove(photo, operating_resolution=SMALL).mask))
