"""Configuration: every value bgone takes from the environment, flags and config files, read here.

Two kinds of settings live in this room, and it is the only module (with ``bgone.cli``) that reads the
environment; everything else gets its configuration passed in, or asks one of the functions below:

* **Engine settings**, used by every entry point (Python API, CLI, service): where checkpoints live
  (``BGONE_MODEL_DIR``), the custom-model registry (``BGONE_MODELS_FILE``), offline mode
  (``BGONE_OFFLINE``, ``HF_HUB_OFFLINE``), the Hugging Face cache (``HF_HOME``, ``HF_HUB_CACHE``), the
  CPU allocator tuning (``BGONE_MALLOC_TUNING``) and the public model names (``BGONE_MODEL_MAP``). They
  are read when asked for, never cached and never at import time, so a process can change them.
* **Server settings** (:class:`ServerSettings`): every flag of ``bgone serve`` / ``bgone worker``, also a
  ``BGONE_*`` variable and a key of a ``--config`` TOML/JSON file.

Also here, because every wing needs them and they depend on nothing: the input limits (:class:`Limits`)
and the default map from public model names (fal's enums, rembg's session names) to registry names.

Imports no other bgone module but :mod:`bgone.errors`. A bad value raises :class:`SettingsError` naming
the variable and the form it expects.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from bgone.errors import SettingsError

MIB = 1024 * 1024
ENV_PREFIX = "BGONE_"


@dataclass(frozen=True)
class Limits:
    """What one input may weigh, checked before its pixels are decoded: encoded bytes, pixels per frame
    (width x height) and animation frames. One object shared by decoding, the pipeline, the service and
    the CLI."""

    max_bytes: int = 64 * MIB
    max_pixels: int = 40_000_000
    max_frames: int = 300


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class VideoLimits:
    """What one input video may weigh, checked from its headers before frames are decoded: encoded bytes,
    duration, frames, and pixels per frame (width x height)."""

    max_bytes: int = 1024 * MIB
    max_seconds: float = 600.0
    max_frames: int = 36_000
    max_pixels: int = 3840 * 2160


DEFAULT_VIDEO_LIMITS = VideoLimits()

# Public model names → registry names (or checkpoint paths), per protocol: the hosted endpoints'
# model enums ("v1", "v2") and rembg's BiRefNet session names ("rembg"). Overridden by the
# `model_map` setting (--model-map FILE, BGONE_MODEL_MAP, a config file's `model_map`).
DEFAULT_MODEL_MAP: dict[str, dict[str, str]] = {
    "v1": {
        "General Use (Light)": "dis-ep580",
        "General Use (Heavy)": "massive-ep240",
        "Portrait": "portrait-p3m-ep120",
    },
    # As fal's v2 image and video pages list them: "Light" is the Swin-L general BiRefNet and "Heavy" the
    # Swin-T BiRefNet_lite (sic: the page also calls Heavy "slower but more accurate"). To run the general
    # model for "Heavy", map it: {"v2": {"General Use (Heavy)": "general"}}.
    "v2": {
        "General Use (Light)": "general",
        "General Use (Light 2K)": "lite-2k",
        "General Use (Heavy)": "lite",
        "Matting": "matting",
        "Portrait": "portrait",
        "General Use (Dynamic)": "dynamic",
    },
    "rembg": {
        "birefnet-general": "general",
        "birefnet-general-lite": "lite",
        "birefnet-portrait": "portrait",
        "birefnet-dis": "dis",
        "birefnet-hrsod": "hrsod",
        "birefnet-cod": "cod",
        "birefnet-massive": "massive",
    },
}
MODEL_MAP_FORM = (
    'a JSON object from model name to registry name or checkpoint path, for every endpoint '
    '({"General Use (Heavy)": "hr"}) or per endpoint ({"v1": {...}, "v2": {...}, "rembg": {...}})'
)
LIST_FORM = "a comma-separated list (a,b) or a JSON array"


def normalize_model_map(data: Any, source: str = "the model map") -> dict[str, dict[str, str]]:
    """Either form of a model map → ``{"v1": {...}, "v2": {...}, "rembg": {...}}`` (only the keys given).

    The flat form maps names of every endpoint: its fal v1 names go to v1, rembg's session names to
    rembg, and every name to v2 (so a registry name or alias may be mapped too)."""
    if not isinstance(data, Mapping) or not all(isinstance(v, str | Mapping) for v in data.values()):
        raise SettingsError(f"{source} must be {MODEL_MAP_FORM}")
    if data and set(data) <= set(DEFAULT_MODEL_MAP):
        if not all(isinstance(v, Mapping) for v in data.values()):
            raise SettingsError(f"{source} must be {MODEL_MAP_FORM}")
        return {version: {str(k): str(v) for k, v in names.items()} for version, names in data.items()}
    if not all(isinstance(v, str) for v in data.values()):
        raise SettingsError(f"{source} must be {MODEL_MAP_FORM}")
    flat = {str(k): str(v) for k, v in data.items()}
    mapping = {"v1": {k: v for k, v in flat.items() if k in DEFAULT_MODEL_MAP["v1"]}, "v2": dict(flat)}
    rembg = {k: v for k, v in flat.items() if k.lower() in DEFAULT_MODEL_MAP["rembg"]}
    return {**mapping, "rembg": rembg} if rembg else mapping


def model_names(version: str, overrides: Mapping[str, Mapping[str, str]] | None = None) -> dict[str, str]:
    """The public names of ``version`` ("v1", "v2" or "rembg") → registry name or checkpoint path: the
    defaults, then ``overrides`` (a normalised model map; default: ``BGONE_MODEL_MAP``)."""
    mapping = dict(DEFAULT_MODEL_MAP[version])
    mapping.update((env_model_map() if overrides is None else overrides).get(version, {}))
    return mapping


def load_model_map(path: Path) -> dict[str, dict[str, str]]:
    """A ``--model-map`` file (JSON, either form of :func:`normalize_model_map`)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read the model map {path}: {exc}") from None
    return normalize_model_map(data, f"the model map {path}")


def load_config_file(path: Path) -> dict[str, Any]:
    """A ``--config`` file: TOML when the name ends in .toml, JSON otherwise, with any server setting."""
    try:
        text = Path(path).read_text()
        data = tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"the config file {path} must hold a table (TOML) or an object (JSON) of settings")
    return data


# ---------------------------------------------------------------------------------------------------
# Engine settings: read from the environment on every call

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def _env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r}: expected a boolean (1/0, true/false, yes/no, on/off)")


def _xdg(name: str, fallback: str) -> Path:
    return Path(os.environ.get(name) or Path.home() / fallback)


def model_dir() -> Path:
    """``BGONE_MODEL_DIR``: where checkpoints are looked for (and release downloads go);
    default ``$XDG_CACHE_HOME/bgone/models`` (``~/.cache/bgone/models``)."""
    value = os.environ.get("BGONE_MODEL_DIR")
    return Path(value).expanduser() if value else _xdg("XDG_CACHE_HOME", ".cache") / "bgone" / "models"


def models_file() -> Path:
    """``BGONE_MODELS_FILE``: the registry of custom checkpoints (``bgone models add``);
    default ``$XDG_CONFIG_HOME/bgone/models.json`` (``~/.config/bgone/models.json``)."""
    value = os.environ.get("BGONE_MODELS_FILE")
    return Path(value).expanduser() if value else _xdg("XDG_CONFIG_HOME", ".config") / "bgone" / "models.json"


def offline() -> bool:
    """``BGONE_OFFLINE`` or ``HF_HUB_OFFLINE``: never download weights."""
    return _env_flag("HF_HUB_OFFLINE") or _env_flag("BGONE_OFFLINE")


def hf_cache_dir() -> str | None:
    """The Hugging Face cache as the environment says now (``HF_HUB_CACHE``, else ``HF_HOME/hub``);
    None for huggingface_hub's own default. (huggingface_hub reads these once, at its import.)"""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def malloc_tuning() -> bool:
    """``BGONE_MALLOC_TUNING`` (default on): keep freed large blocks in the CPU allocator for reuse."""
    return _env_flag("BGONE_MALLOC_TUNING", default=True)


def aws_endpoint_url() -> str | None:
    """The S3 endpoint boto3 takes from the environment (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``):
    a custom endpoint (MinIO, R2, moto) gets path-style addressing by default."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def env_model_map() -> dict[str, dict[str, str]]:
    """``BGONE_MODEL_MAP``, normalised ({} when unset)."""
    value = os.environ.get("BGONE_MODEL_MAP", "").strip()
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError:
        raise SettingsError(f"BGONE_MODEL_MAP is not JSON: expected {MODEL_MAP_FORM}") from None
    return normalize_model_map(data, "BGONE_MODEL_MAP")


# ---------------------------------------------------------------------------------------------------
# Server settings

CommaList = Annotated[list[str], NoDecode]  # BGONE_API_KEYS=a,b or ["a","b"]: parsed by _split below


class ServerSettings(BaseSettings):
    """Every setting of ``bgone serve`` and ``bgone worker``; build it with :func:`server_settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    data_dir: Path = Path("bgone-data")
    api_keys: CommaList = Field(default_factory=list, description="accepted `Authorization: Key <key>` values")
    open_access: bool = Field(default=False, description="accept requests without a key (local use only)")
    model_map: Annotated[dict[str, dict[str, str]], NoDecode] = Field(
        default_factory=dict, description="public model name -> registry name or checkpoint path"
    )
    device: str = "auto"
    dtype: str = "auto"  # bfloat16 where the device computes it natively; "float32" forces official numerics
    backend: str = Field(default="auto", description="auto: onnxruntime for .onnx model files, PyTorch otherwise")
    batch_size: int = Field(default=4, ge=1)
    compile: bool = Field(default=False, description="torch.compile models (one-off compilation per size)")
    max_models: int = Field(default=2, ge=1)
    model_memory_mb: int | None = Field(default=None, description="evict least recently used models beyond this")
    warm_model: str | None = "General Use (Light)"  # loaded at start-up for /ready; None: lazy
    max_image_bytes: int = Field(default=DEFAULT_LIMITS.max_bytes, ge=1)
    max_request_bytes: int = Field(
        default=96 * MIB, ge=1, description="any request body; a 64 MiB image as a base64 data URI is ~86 MiB"
    )
    max_image_pixels: int = Field(default=DEFAULT_LIMITS.max_pixels, ge=1)
    max_frames: int = Field(default=DEFAULT_LIMITS.max_frames, ge=1)
    max_video_bytes: int = Field(default=DEFAULT_VIDEO_LIMITS.max_bytes, ge=1)
    max_video_seconds: float = Field(default=DEFAULT_VIDEO_LIMITS.max_seconds, gt=0)
    max_video_frames: int = Field(default=DEFAULT_VIDEO_LIMITS.max_frames, ge=1)
    max_video_pixels: int = Field(default=DEFAULT_VIDEO_LIMITS.max_pixels, ge=1)
    max_operating_side: int | None = Field(
        default=None, ge=32, description="cap every operating resolution's side (e.g. 512 on a small CPU box)"
    )
    fetch_timeout: float = Field(default=20.0, gt=0)
    allow_private_urls: bool = False
    allowed_hosts: CommaList = Field(default_factory=list, description="hosts fetched even if private")
    retention_seconds: float = Field(default=7 * 24 * 3600, gt=0)
    # fal's policy: 10 tries over about 2 hours (waits of 15 s, 30 s, … doubling, at most an hour).
    webhook_attempts: int = Field(default=10, ge=1)
    webhook_backoff: float = Field(default=15.0, ge=0, description="seconds before the first retry, doubled after each")
    webhook_max_backoff: float = Field(default=3600.0, ge=0)
    webhook_timeout: float = Field(default=15.0, gt=0)
    webhook_signing_keys: CommaList = Field(
        default_factory=list,
        description="base64url Ed25519 private keys (the first signs; all are published); default: kept in data_dir",
    )
    webhook_user_id: str | None = Field(
        default=None, description="X-Fal-Webhook-User-Id of every webhook; default: one id per API key"
    )
    cors_origins: CommaList = Field(default_factory=list)
    start_worker: bool = True
    queue: str | None = Field(default=None, description="redis://host:port/db; default: SQLite in data_dir")
    storage: str | None = Field(default=None, description="s3://bucket/prefix; default: files in data_dir")
    role: str = Field(default="all", description="all: API and worker; api: no model is ever loaded here")

    @field_validator("warm_model", mode="before")
    @classmethod
    def _warm_model(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None  # load lazily, as --warm-model none
        return value

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value not in ("auto", "torch", "onnx"):
            raise ValueError("backend must be 'auto', 'torch' or 'onnx'")
        return value

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ("all", "api"):
            raise ValueError("role must be 'all' or 'api'")
        return value

    @field_validator("api_keys", "allowed_hosts", "cors_origins", "webhook_signing_keys", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError(f"not a JSON array; expected {LIST_FORM}") from None
            return [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("model_map", mode="before")
    @classmethod
    def _model_map(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except ValueError:
                raise ValueError(f"not JSON; expected {MODEL_MAP_FORM}") from None
        try:
            return normalize_model_map(value)
        except SettingsError as exc:
            raise ValueError(str(exc)) from None

    @property
    def runs_worker(self) -> bool:
        return self.start_worker and self.role == "all"

    @property
    def limits(self) -> Limits:
        return Limits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels, max_frames=self.max_frames)

    @property
    def video_limits(self) -> VideoLimits:
        return VideoLimits(
            max_bytes=self.max_video_bytes,
            max_seconds=self.max_video_seconds,
            max_frames=self.max_video_frames,
            max_pixels=self.max_video_pixels,
        )

    def model_names(self, version: str) -> dict[str, str]:
        """Public model names of ``version`` ("v1", "v2", "rembg") → registry name or checkpoint path."""
        return model_names(version, self.model_map)

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bgone.db"


# What each field type looks like when written as an environment variable or a flag.
_FORMS = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean (1/0, true/false, yes/no, on/off)",
    "list": LIST_FORM,
    "dict": MODEL_MAP_FORM,
}


def _expected_form(field: str) -> str:
    info = ServerSettings.model_fields.get(field)
    text = str(info.annotation) if info is not None else ""
    for key in ("list", "dict", "bool", "float", "int"):
        if key in text:
            return _FORMS[key]
    return "a string"


def server_settings(**values: Any) -> ServerSettings:
    """Server settings from ``values`` (flags, a config file), then ``BGONE_*`` variables, then defaults.

    A bad value raises :class:`SettingsError` naming the setting, its variable and the expected form."""
    try:
        return ServerSettings(**values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            if error["type"] == "extra_forbidden":
                problems.append(f"unknown setting {field!r}")
                continue
            given = error.get("input")
            shown = f", got {given!r}" if isinstance(given, str | int | float | bool) else ""
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(
                f"{field} ({ENV_PREFIX}{field.upper()}): {message}{shown}; expected {_expected_form(field)}"
            )
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
    except PydanticSettingsError as exc:  # a value the environment source could not even read
        raise SettingsError(f"invalid setting: {exc}") from None
