"""The model zoo: every official BiRefNet checkpoint, where it comes from, and how to get it.

Each variant records its source (Hugging Face repo + file + revision, and the GitHub release
``.pth`` where one exists), the SHA-256 where a public record of it was found, the backbone and
design, the native operating resolution and the patch order it was trained with. Sources and the
evidence for each fact are in ``docs/checkpoint-sources.md``.

Patch order: on 2024-11-05 the official code changed how image patches are stacked into
channels (``legacy`` → ``einops``) without changing any weight shape. Checkpoints trained before
that date learnt the legacy order; current official code feeds every checkpoint the einops order.
bgone feeds each checkpoint the order it was trained with by default (``patch_order=`` overrides,
e.g. to reproduce the current official code bit for bit).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ChecksumMismatchError, ModelNotAvailableError, UnknownModelError
from .nn.birefnet import Design, PatchOrder

RELEASE = "https://github.com/ZhengPeng7/BiRefNet/releases/download/v1/"


@dataclass(frozen=True)
class Variant:
    name: str
    title: str
    backbone: str
    design: Design
    patch_order: PatchOrder
    resolution: tuple[int, int] | None  # (width, height); None: the image's own size (dynamic models)
    hf_repo: str | None
    hf_filename: str = "model.safetensors"
    hf_revision: str = "main"
    release_filename: str | None = None  # asset name on the GitHub release v1
    sha256: str | None = None  # of the file at hf_repo/hf_filename@hf_revision
    trained: str = ""  # when the weights were published, as far as known
    description: str = ""
    aliases: tuple[str, ...] = ()
    path: str | None = None  # custom variants: a local checkpoint file

    @property
    def release_url(self) -> str | None:
        return RELEASE + self.release_filename if self.release_filename else None

    @property
    def hf_url(self) -> str | None:
        if not self.hf_repo:
            return None
        return f"https://huggingface.co/{self.hf_repo}/resolve/{self.hf_revision}/{self.hf_filename}"

    @property
    def local_filename(self) -> str:
        """The file name bgone looks for in its model directory."""
        if self.hf_filename.endswith(".pth"):
            return self.hf_filename
        return f"{self.name}.safetensors"

    @property
    def resolution_label(self) -> str:
        return "dynamic (own size, /32, max 2304)" if self.resolution is None else "{}x{}".format(*self.resolution)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data.update(release_url=self.release_url, hf_url=self.hf_url)
        return data


def _v(name: str, title: str, repo: str | None, release: str | None, **kw: object) -> Variant:
    kw.setdefault("backbone", "swin_v1_l")
    kw.setdefault("design", "v1")
    kw.setdefault("patch_order", "legacy")
    kw.setdefault("resolution", (1024, 1024))
    return Variant(name=name, title=title, hf_repo=repo, release_filename=release, **kw)  # type: ignore[arg-type]


BUILTIN_VARIANTS: tuple[Variant, ...] = (
    _v(
        "general",
        "General use (Swin-L)",
        "ZhengPeng7/BiRefNet",
        "BiRefNet-general-epoch_244.pth",
        sha256="77277264c0e8c74149d3ff2fade4fd8176965b7108f3c5fc3b8c9c811edb4519",
        trained="2024-07",
        description="Default general-purpose model: DIS, HRSOD, UHRSD, HRS10K, P3M and humans.",
        aliases=("BiRefNet", "birefnet-general", "heavy"),
    ),
    _v(
        "lite",
        "General use, lite (Swin-T)",
        "ZhengPeng7/BiRefNet_lite",
        "BiRefNet-general-bb_swin_v1_tiny-epoch_232.pth",
        backbone="swin_v1_t",
        trained="2024-08",
        description="Same data as general on a Swin-T backbone: 5x fewer parameters.",
        aliases=("BiRefNet_lite", "BiRefNet_T", "birefnet-general-lite", "light"),
    ),
    _v(
        "lite-2k",
        "General use, lite 2K (Swin-T, 2560x1440)",
        "ZhengPeng7/BiRefNet_lite-2K",
        "BiRefNet_lite-general-2K-epoch_232.pth",
        backbone="swin_v1_t",
        resolution=(2560, 1440),
        sha256="aa2e4a5af5eb3904694feb40f2b39ec5dd7cd9110906590cfeb982f09a46021d",
        trained="2024-09",
        description="Swin-T trained at 2560x1440 (W x H) for 2K landscape images.",
        aliases=("BiRefNet_lite-2K", "light-2k"),
    ),
    _v(
        "512x512",
        "General use at 512x512 (Swin-L)",
        "ZhengPeng7/BiRefNet_512x512",
        "BiRefNet-general-resolution_512x512-fp16-epoch_216.pth",
        patch_order="einops",
        resolution=(512, 512),
        trained="2024-12",
        description="Swin-L trained at 512x512 for fast low-resolution use (weights stored in fp16).",
        aliases=("BiRefNet_512x512", "BiRefNet-reso_512", "reso-512"),
    ),
    _v(
        "hr",
        "General use, high resolution (Swin-L, 2048x2048)",
        "ZhengPeng7/BiRefNet_HR",
        "BiRefNet_HR-general-epoch_130.pth",
        patch_order="einops",
        resolution=(2048, 2048),
        trained="2025-02",
        description="Swin-L trained at 2048x2048 (weights stored in fp16).",
        aliases=("BiRefNet_HR", "general-hr"),
    ),
    _v(
        "hr-matting",
        "Matting, high resolution (Swin-L, 2048x2048)",
        "ZhengPeng7/BiRefNet_HR-matting",
        "BiRefNet_HR-matting-epoch_135.pth",
        patch_order="einops",
        resolution=(2048, 2048),
        trained="2025-02",
        description="Trimap-free matting at 2048x2048 (weights stored in fp16).",
        aliases=("BiRefNet_HR-matting",),
    ),
    _v(
        "matting",
        "Matting (Swin-L)",
        "ZhengPeng7/BiRefNet-matting",
        "BiRefNet-matting-epoch_100.pth",
        hf_revision="cd932446205ce9ad963078f0d70de2d26674f716",
        sha256="a9875de5b1e6c8eb5fdaa8c727a82927ce442cdc87ba3abee6a77e6fa46c25bb",
        trained="2024-10",
        description="Trimap-free matting: soft alpha for hair, fur and transparency.",
        aliases=("BiRefNet-matting",),
    ),
    _v(
        "lite-matting",
        "Matting, lite (Swin-T)",
        "ZhengPeng7/BiRefNet_lite-matting",
        None,
        backbone="swin_v1_t",
        patch_order="einops",
        trained="unknown (patch order inferred)",
        description="Matting on Swin-T.",
        aliases=("BiRefNet_lite-matting",),
    ),
    _v(
        "portrait",
        "Portrait (Swin-L)",
        "ZhengPeng7/BiRefNet-portrait",
        "BiRefNet-portrait-epoch_150.pth",
        sha256="4a4eb3a5469b75f0cccaec6772c22fc30e6c12ed429c2c0ba71b43e3d8d97182",
        trained="2024-08",
        description="Portrait segmentation/matting: P3M-10k and humans.",
        aliases=("BiRefNet-portrait", "birefnet-portrait"),
    ),
    _v(
        "dynamic",
        "General use, dynamic resolution (Swin-L)",
        "ZhengPeng7/BiRefNet_dynamic",
        "BiRefNet_dynamic-general-epoch_174.pth",
        patch_order="einops",
        resolution=None,
        trained="2025-03",
        description="Trained on random sizes 256..2304: runs at the image's own size.",
        aliases=("BiRefNet_dynamic",),
    ),
    _v(
        "dynamic-matting",
        "Matting, dynamic resolution (Swin-L)",
        "ZhengPeng7/BiRefNet_dynamic-matting",
        None,
        patch_order="einops",
        resolution=None,
        trained="2025 (inferred)",
        description="Matting trained on random sizes 256..2304.",
        aliases=("BiRefNet_dynamic-matting",),
    ),
    _v(
        "dis",
        "DIS benchmark (Swin-L, DIS5K-TR)",
        "ZhengPeng7/BiRefNet-DIS5K",
        "BiRefNet-DIS-epoch_590.pth",
        sha256="6641691e0484f458e1f72ec15ecf2856c07de1bd9500a05895ba57f9b9da7bee",
        trained="2024-08",
        description="Dichotomous image segmentation, trained on DIS5K-TR only.",
        aliases=("BiRefNet-DIS5K", "birefnet-dis"),
    ),
    _v(
        "hrsod",
        "HRSOD benchmark (Swin-L)",
        "ZhengPeng7/BiRefNet-HRSOD",
        "BiRefNet-HRSOD_DHU-epoch_115.pth",
        hf_revision="9c64804471c4266336c4b7638626e0301e04250d",
        sha256="dcc61b9f2074f5d4cb36c022c060543359047811cab426aa6dfa8a48f5034b8c",
        trained="2024-08",
        description="High-resolution salient object detection (DUTS + HRSOD + UHRSD).",
        aliases=("BiRefNet-HRSOD", "birefnet-hrsod"),
    ),
    _v(
        "cod",
        "COD benchmark (Swin-L)",
        "ZhengPeng7/BiRefNet-COD",
        "BiRefNet-COD-epoch_125.pth",
        hf_revision="f648b6efa109baf9da3d597ffb43bc60df6cf24b",
        sha256="6c321deba6f15147f325566d0470e75e7258bf481f5e0b6c667659530d40019e",
        trained="2024-08",
        description="Camouflaged object detection (COD10K + CAMO).",
        aliases=("BiRefNet-COD", "birefnet-cod"),
    ),
    _v(
        "massive",
        "DIS5K TR+TEs, 'massive' (Swin-L)",
        "ZhengPeng7/BiRefNet-DIS5K-TR_TEs",
        "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.pth",
        trained="2024-05",
        description="Trained on DIS5K-TR and DIS-TEs.",
        aliases=("BiRefNet-DIS5K-TR_TEs", "birefnet-massive"),
    ),
    _v(
        "legacy",
        "Legacy general (Swin-L, massive epoch 240)",
        "ZhengPeng7/BiRefNet-legacy",
        None,
        hf_revision="62fffc4c59b029946ef3aa2e4e28b38f5669d603",
        sha256="40e4ef76d28bc11380c7833fb2a834c327a90fae698797fca3c2afbf9d9a42cc",
        trained="2024-05",
        description="The May-2024 general model (DIS + HRSOD + UHRSD + HRS10K); same weights as massive-epoch_240.",
        aliases=("BiRefNet-legacy",),
    ),
    # The files that the hosted fal-ai/birefnet (v1) endpoint names.
    _v(
        "massive-ep240",
        "fal v1 'General Use (Heavy)': BiRefNet-massive-epoch_240.pth",
        "ZhengPeng7/BiRefNet-legacy",
        None,
        hf_filename="BiRefNet-massive-epoch_240.pth",
        hf_revision="63fb713d7826f9b548863d9dd289799f9380e44d",
        sha256="1ccb3959dfa99b85d7b1f57dcf59616873ff5f45e0a3f1e0b14b07f6ee74b01f",
        trained="2024-05",
        description="The original .pth of 'legacy'.",
        aliases=("BiRefNet-massive-epoch_240",),
    ),
    _v(
        "dis-ep580",
        "fal v1 'General Use (Light)': BiRefNet-DIS_ep580.pth (paper-era design)",
        "ViperYX/BiRefNet",
        None,
        design="v0",
        hf_filename="BiRefNet-DIS_ep580.pth",
        hf_revision="5f1ce5fdca895da5217f3a63296fe807b7184b76",
        sha256="9b4510f31d72e41507a4b75c4e62206b1d7e2223e0125b29644acd4b142793b0",
        trained="2024-03",
        description="Paper-era DIS model (v0 design); mirrored on Hugging Face by a third party.",
        aliases=("BiRefNet-DIS_ep580",),
    ),
    _v(
        "portrait-p3m-ep120",
        "fal v1 'Portrait': BiRefNet-portrait-TR_P3M_10k-epoch_120.pth",
        "ZhengPeng7/BiRefNet-portrait",
        None,
        hf_filename="BiRefNet-portrait-TR_P3M_10k-epoch_120.pth",
        hf_revision="925c4cdaa0be9ea5882b2f5a0eec317bd94e7639",
        sha256="9a31ed736e17bc36a7ab539b71419b27f69b839e8ba132c6a67fe77edceb4141",
        trained="2024-05",
        description="Portrait model trained on P3M-10k.",
        aliases=("BiRefNet-portrait-TR_P3M_10k-epoch_120",),
    ),
)

# The hosted endpoints' model enums mapped to registry names. Override with BGONE_MODEL_MAP
# (JSON: {"v2": {"General Use (Heavy)": "hr"}}) or the ``overrides`` argument.
FAL_MODEL_MAP: dict[str, dict[str, str]] = {
    "v1": {
        "General Use (Light)": "dis-ep580",
        "General Use (Heavy)": "massive-ep240",
        "Portrait": "portrait-p3m-ep120",
    },
    "v2": {
        "General Use (Light)": "lite",
        "General Use (Light 2K)": "lite-2k",
        "General Use (Heavy)": "general",
        "Matting": "matting",
        "Portrait": "portrait",
        "General Use (Dynamic)": "dynamic",
    },
}


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-.()]+", "", name.lower())


@dataclass
class Registry:
    variants: dict[str, Variant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._index: dict[str, str] = {}
        for variant in list(self.variants.values()):
            self._add_to_index(variant)

    def _add_to_index(self, variant: Variant) -> None:
        keys = [variant.name, *variant.aliases]
        if variant.release_filename:
            keys.append(Path(variant.release_filename).stem)
        for key in keys:
            owner = self._index.setdefault(_normalise(key), variant.name)
            if owner != variant.name:
                raise ValueError(f"model name {key!r} of {variant.name!r} is already taken by {owner!r}")

    def add(self, variant: Variant, *, replace: bool = False) -> Variant:
        if variant.name in self.variants and not replace:
            raise ValueError(f"a model named {variant.name!r} is already registered")
        if replace and variant.name in self.variants:
            old = self.variants.pop(variant.name)
            self._index = {k: v for k, v in self._index.items() if v != old.name}
        self.variants[variant.name] = variant
        self._add_to_index(variant)
        return variant

    def __iter__(self) -> Iterator[Variant]:
        return iter(self.variants.values())

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def find(self, name: str) -> Variant | None:
        key = self._index.get(_normalise(name))
        return self.variants[key] if key else None

    def get(self, name: str) -> Variant:
        variant = self.find(name) or self._from_fal_name(name)
        if variant is None:
            choices = sorted({*self.variants, *FAL_MODEL_MAP["v2"]})
            close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownModelError(
                f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(self.variants))} "
                "(see `bgone models list`), a fal model name such as 'General Use (Light)', or a checkpoint path."
            )
        return variant

    def _from_fal_name(self, name: str) -> Variant | None:
        version, _, fal_name = name.partition(":") if name.startswith(("v1:", "v2:")) else ("v2", "", name)
        target = fal_model_map(version).get(fal_name.strip())
        return self.find(target) if target else None


def fal_model_map(version: str, overrides: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
    """The fal model enum of ``version`` ('v1' or 'v2') → registry name, with overrides applied."""
    mapping = dict(FAL_MODEL_MAP[version])
    env = os.environ.get("BGONE_MODEL_MAP")
    if env:
        try:
            mapping.update(json.loads(env).get(version, {}))
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"BGONE_MODEL_MAP is not valid JSON of the form {{'v2': {{...}}}}: {exc}") from exc
    if overrides:
        mapping.update(overrides.get(version, {}))
    return mapping


def user_registry_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(os.environ.get("BGONE_MODELS_FILE", Path(base) / "bgone" / "models.json"))


def _load_user_variants() -> Iterable[Variant]:
    path = user_registry_file()
    if not path.is_file():
        return []
    entries = json.loads(path.read_text())
    variants = []
    for entry in entries.get("models", []):
        resolution = entry.get("resolution")
        variants.append(
            Variant(
                name=entry["name"],
                title=entry.get("title", entry["name"]),
                backbone=entry.get("backbone", "auto"),
                design=entry.get("design", "v1"),
                patch_order=entry.get("patch_order", "einops"),
                resolution=tuple(resolution) if resolution else None,  # type: ignore[arg-type]
                hf_repo=None,
                sha256=entry.get("sha256"),
                description=entry.get("description", "custom checkpoint"),
                path=entry["path"],
            )
        )
    return variants


def default_registry() -> Registry:
    registry = Registry({v.name: v for v in BUILTIN_VARIANTS})
    for variant in _load_user_variants():
        registry.add(variant, replace=True)
    return registry


def register(
    name: str,
    path: str | os.PathLike[str],
    *,
    patch_order: PatchOrder = "einops",
    resolution: tuple[int, int] | None = (1024, 1024),
    title: str | None = None,
    persist: bool = False,
) -> Variant:
    """Register a custom checkpoint under ``name`` (for this process; ``persist`` writes the user registry)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    variant = Variant(
        name=name,
        title=title or name,
        backbone="auto",
        design="v1",
        patch_order=patch_order,
        resolution=resolution,
        hf_repo=None,
        description="custom checkpoint",
        path=str(path),
    )
    REGISTRY.add(variant, replace=True)
    if persist:
        file = user_registry_file()
        data = json.loads(file.read_text()) if file.is_file() else {"models": []}
        data["models"] = [m for m in data["models"] if m["name"] != name]
        data["models"].append(
            {
                "name": name,
                "title": variant.title,
                "path": str(path),
                "patch_order": patch_order,
                "resolution": list(resolution) if resolution else None,
            }
        )
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(data, indent=2))
    return variant


REGISTRY = default_registry()


# ---------------------------------------------------------------------------------------------
# Getting the weights


def model_dir() -> Path:
    """Where bgone looks for (and downloads non-Hugging-Face) checkpoints: BGONE_MODEL_DIR."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("BGONE_MODEL_DIR", Path(base) / "bgone" / "models")).expanduser()


def is_offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "BGONE_OFFLINE"))


def local_candidates(variant: Variant) -> list[Path]:
    if variant.path:
        return [Path(variant.path)]
    directory = model_dir()
    names = [variant.local_filename, f"{variant.name}.safetensors", f"{variant.name}.pth"]
    if variant.release_filename:
        names.append(variant.release_filename)
    if variant.hf_repo:
        names.append(f"{variant.hf_repo.split('/')[-1]}.safetensors")
    return [directory / n for n in dict.fromkeys(names)]


def hf_cache_dir() -> str | None:
    """The Hugging Face cache as the environment says now (huggingface_hub reads it once at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _hf_cached(variant: Variant) -> Path | None:
    if not variant.hf_repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(
        variant.hf_repo, variant.hf_filename, revision=variant.hf_revision, cache_dir=hf_cache_dir()
    )
    return Path(found) if isinstance(found, str) else None


def find_local(variant: Variant) -> Path | None:
    """A checkpoint for ``variant`` already on this machine (model dir or Hugging Face cache)."""
    for candidate in local_candidates(variant):
        if candidate.is_file():
            return candidate
    return _hf_cached(variant)


def missing_weights_message(variant: Variant, reason: str) -> str:
    directory = model_dir()
    lines = [f"weights for model {variant.name!r} ({variant.title}) are not on this machine: {reason}.", ""]
    lines.append(f"To use it without network access, download one of these files into {directory}/ :")
    if variant.hf_url:
        lines.append(f"    {variant.local_filename}  <- {variant.hf_url}")
        if variant.sha256:
            lines.append(f"    (SHA-256 {variant.sha256})")
    if variant.release_url:
        lines.append(f"    {variant.release_filename}  <- {variant.release_url}")
    lines.append(
        "Or copy it into the Hugging Face cache on a machine with network (`bgone models pull "
        f"{variant.name}`, then copy ~/.cache/huggingface), set BGONE_MODEL_DIR to use another folder, or pass "
        "the file's path wherever a model is named (bgone.load_model('/path/to/file.pth'), --model /path/to/file.pth)."
    )
    return "\n".join(lines)


def sha256_of(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verified_cache_file() -> Path:
    return model_dir() / ".verified.json"


def verify_checksum(variant: Variant, path: Path, *, force: bool = False) -> bool | None:
    """True if the file matches the recorded SHA-256, None if none is recorded for a file of this
    kind; raises on mismatch. A match is remembered by (path, size, mtime): big files hash once."""
    # The recorded hash is that of the Hugging Face file; a release .pth in its place has another.
    if not variant.sha256 or path.suffix.lower() != Path(variant.hf_filename).suffix.lower():
        return None
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"
    cache_file = _verified_cache_file()
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}
    if not force and cache.get(key) == variant.sha256:
        return True
    _check(variant, path)
    cache[key] = variant.sha256
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return True


def _check(variant: Variant, path: Path) -> bool:
    actual = sha256_of(path)
    if actual != variant.sha256:
        raise ChecksumMismatchError(
            f"{path} does not match the published checksum of {variant.name!r}: SHA-256 {actual}, expected "
            f"{variant.sha256}. The file is corrupt, truncated, or a different checkpoint; delete it and "
            "run `bgone models pull` again, or pass the file's path directly to use it as a custom checkpoint."
        )
    return True


def fetch_weights(variant: Variant, *, progress: bool = True, verify: bool = True) -> Path:
    """Return a local path to the weights of ``variant``, downloading them if needed and allowed."""
    local = find_local(variant)
    if local is not None:
        if verify:
            verify_checksum(variant, local)
        return local
    if variant.path:
        raise ModelNotAvailableError(f"the checkpoint registered as {variant.name!r} is missing: {variant.path}")
    if is_offline():
        raise ModelNotAvailableError(
            missing_weights_message(variant, "offline mode (HF_HUB_OFFLINE / BGONE_OFFLINE) is on")
        )
    errors: list[str] = []
    if variant.hf_repo:
        try:
            path = _download_from_hub(variant, progress=progress)
        except Exception as exc:
            errors.append(f"Hugging Face ({variant.hf_repo}): {type(exc).__name__}: {exc}".splitlines()[0])
        else:
            if verify:
                verify_checksum(variant, path)
            return path
    if variant.release_url:
        try:
            path = download_url(variant.release_url, model_dir() / variant.release_filename, progress=progress)  # type: ignore[operator]
        except Exception as exc:
            errors.append(f"GitHub release: {type(exc).__name__}: {exc}".splitlines()[0])
        else:
            return path
    raise ModelNotAvailableError(missing_weights_message(variant, "download failed (" + "; ".join(errors) + ")"))


def _download_from_hub(variant: Variant, *, progress: bool) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    if not progress:
        disable_progress_bars()
    try:
        # The shared HF cache: resumable, deduplicated with other tools, honours HF_HOME/HF_HUB_OFFLINE.
        return Path(
            hf_hub_download(
                variant.hf_repo,  # type: ignore[arg-type]
                variant.hf_filename,
                revision=variant.hf_revision,
                cache_dir=hf_cache_dir(),
            )
        )
    finally:
        if not progress:
            enable_progress_bars()


def download_url(url: str, target: Path, *, progress: bool = True, timeout: float = 30.0) -> Path:
    """Resumable HTTP download to ``target`` (a ``.part`` file is kept between attempts)."""
    import httpx
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    with httpx.stream("GET", url, headers=headers, follow_redirects=True, timeout=timeout) as response:
        if response.status_code == 416:  # already complete
            part.rename(target)
            return target
        response.raise_for_status()
        if start and response.status_code != 206:
            start = 0  # server ignored the range: start over
        total = int(response.headers.get("content-length", 0)) + start
        with (
            part.open("ab" if start else "wb") as fh,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                disable=not progress,
            ) as bar,
        ):
            task = bar.add_task(target.name, total=total or None, completed=start)
            for block in response.iter_bytes(1 << 20):
                fh.write(block)
                bar.update(task, advance=len(block))
    part.rename(target)
    return target
