"""Server settings: one object, from flags, ``BGONE_*`` environment variables and a config file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..zoo import FAL_MODEL_MAP


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BGONE_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = 8000
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    data_dir: Path = Path("bgone-data")
    api_keys: list[str] = Field(default_factory=list, description="accepted `Authorization: Key <key>` values")
    open_access: bool = Field(default=False, description="accept requests without a key (local use only)")
    model_map: dict[str, dict[str, str]] = Field(default_factory=dict, description="{'v2': {fal name: model}}")
    device: str = "auto"
    dtype: str = "auto"  # bfloat16 where the device computes it natively; "float32" forces official numerics
    backend: str = Field(default="auto", description="auto: onnxruntime for .onnx model files, PyTorch otherwise")
    batch_size: int = 4
    compile: bool = Field(default=False, description="torch.compile models (one-off compilation per size)")
    max_models: int = 2
    model_memory_mb: int | None = Field(default=None, description="evict least recently used models beyond this")
    warm_model: str | None = "General Use (Light)"  # loaded at start-up for /ready; None: lazy
    max_image_bytes: int = 64 * 1024 * 1024
    max_request_bytes: int = Field(
        default=96 * 1024 * 1024, description="any request body; a 64 MiB image as a base64 data URI is ~86 MiB"
    )
    max_image_pixels: int = 40_000_000
    max_frames: int = 300
    max_operating_side: int | None = Field(
        default=None, description="cap every operating resolution's side (e.g. 512 on a small CPU box)"
    )
    fetch_timeout: float = 20.0
    allow_private_urls: bool = False
    allowed_hosts: list[str] = Field(default_factory=list, description="hosts fetched even if private")
    retention_seconds: float = 7 * 24 * 3600
    webhook_attempts: int = 10
    webhook_backoff: float = 1.0
    webhook_timeout: float = 15.0
    cors_origins: list[str] = Field(default_factory=list)
    start_worker: bool = True
    queue: str | None = Field(default=None, description="redis://host:port/db; default: SQLite in data_dir")
    storage: str | None = Field(default=None, description="s3://bucket/prefix; default: files in data_dir")
    role: str = Field(default="all", description="all: API and worker; api: no model is ever loaded here")

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

    @property
    def runs_worker(self) -> bool:
        return self.start_worker and self.role == "all"

    @field_validator("api_keys", "allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # BGONE_API_KEYS=a,b
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def fal_model_map(self, version: str) -> dict[str, str]:
        mapping = dict(FAL_MODEL_MAP[version])
        mapping.update(self.model_map.get(version, {}))
        return mapping

    def rembg_model_map(self) -> dict[str, str]:
        """rembg model name → registry name or checkpoint path (``{"rembg": {...}}`` in the model map)."""
        from .rembg import REMBG_MODEL_MAP

        mapping = dict(REMBG_MODEL_MAP)
        mapping.update(self.model_map.get("rembg", {}))
        return mapping

    @property
    def database_path(self) -> Path:
        return self.data_dir / "bgone.db"


def load_model_map(path: Path) -> dict[str, dict[str, str]]:
    """A JSON object from fal model name to registry name or checkpoint path, for both endpoints
    (``{"General Use (Heavy)": "hr"}``), or per version (``{"v1": {...}, "v2": {...}}``, plus
    ``"rembg": {...}`` for rembg's model names). In the flat form rembg names go to the rembg map."""
    from .rembg import REMBG_MODEL_MAP

    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the model map must be a JSON object")
    if set(data) <= {"v1", "v2", "rembg"}:
        return {k: dict(v) for k, v in data.items()}
    rembg = {k: v for k, v in data.items() if k.lower() in REMBG_MODEL_MAP}
    mapping = {"v1": {k: v for k, v in data.items() if k in FAL_MODEL_MAP["v1"]}, "v2": dict(data)}
    return {**mapping, "rembg": rembg} if rembg else mapping


def load_config_file(path: Path) -> dict[str, Any]:
    text = Path(path).read_text()
    return tomllib.loads(text) if str(path).endswith(".toml") else json.loads(text)
