"""Configuration as documented: every ``BGONE_*`` variable of the server (one per flag), the engine's
variables (model folder, custom-model registry, offline mode, Hugging Face cache, allocator, model map),
list settings in the comma form and as JSON, config files, and one clear message naming the variable and
the expected form for a bad value, also through ``bgone serve`` itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bgone import settings
from bgone.errors import SettingsError
from bgone.settings import DEFAULT_MODEL_MAP, ServerSettings, load_config_file, load_model_map, server_settings

# One value per server setting, as a user writes it in the environment, and what it must become.
SERVER_VARIABLES: dict[str, tuple[str, object]] = {
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("9000", 9000),
    "ssl_certfile": ("/certs/cert.pem", Path("/certs/cert.pem")),
    "ssl_keyfile": ("/certs/key.pem", Path("/certs/key.pem")),
    "data_dir": ("/var/lib/bgone", Path("/var/lib/bgone")),
    "api_keys": ("a,b", ["a", "b"]),
    "open_access": ("true", True),
    "model_map": ('{"v2": {"General Use (Heavy)": "hr"}}', {"v2": {"General Use (Heavy)": "hr"}}),
    "device": ("cpu", "cpu"),
    "dtype": ("float32", "float32"),
    "backend": ("onnx", "onnx"),
    "batch_size": ("8", 8),
    "compile": ("1", True),
    "max_models": ("3", 3),
    "model_memory_mb": ("4096", 4096),
    "warm_model": ("Portrait", "Portrait"),
    "max_image_bytes": ("1048576", 1048576),
    "max_request_bytes": ("2097152", 2097152),
    "max_image_pixels": ("1000000", 1000000),
    "max_frames": ("50", 50),
    "max_video_bytes": ("104857600", 104857600),
    "max_video_seconds": ("12.5", 12.5),
    "max_video_frames": ("300", 300),
    "max_video_pixels": ("2073600", 2073600),
    "max_operating_side": ("512", 512),
    "fetch_timeout": ("7.5", 7.5),
    "allow_private_urls": ("yes", True),
    "allowed_hosts": ("images.internal, cdn.internal", ["images.internal", "cdn.internal"]),
    "retention_seconds": ("3600", 3600.0),
    "webhook_attempts": ("3", 3),
    "webhook_backoff": ("0.5", 0.5),
    "webhook_timeout": ("5", 5.0),
    "webhook_max_backoff": ("120", 120.0),
    "webhook_signing_keys": ("k1,k2", ["k1", "k2"]),
    "webhook_user_id": ("studio-7", "studio-7"),
    "cors_origins": ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
    "start_worker": ("false", False),
    "queue": ("redis://localhost:6379/0", "redis://localhost:6379/0"),
    "storage": ("s3://bucket/prefix", "s3://bucket/prefix"),
    "role": ("api", "api"),
}


def test_every_server_setting_has_a_documented_variable() -> None:
    assert set(SERVER_VARIABLES) == set(ServerSettings.model_fields)


@pytest.mark.parametrize("field", sorted(SERVER_VARIABLES))
def test_each_bgone_variable_sets_its_setting(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text, expected = SERVER_VARIABLES[field]
    monkeypatch.setenv(f"BGONE_{field.upper()}", text)
    assert getattr(server_settings(), field) == expected


@pytest.mark.parametrize("field", ["api_keys", "allowed_hosts", "cors_origins"])
@pytest.mark.parametrize(("text", "expected"), [("a,b", ["a", "b"]), ('["a", "b"]', ["a", "b"]), ("a", ["a"]), ("", [])])
def test_list_settings_take_the_comma_form_and_json(field: str, text: str, expected: list, monkeypatch) -> None:
    monkeypatch.setenv(f"BGONE_{field.upper()}", text)
    assert getattr(server_settings(), field) == expected


@pytest.mark.parametrize("text", ["none", "None", ""])
def test_warm_model_none_loads_lazily_from_any_source(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGONE_WARM_MODEL", text)
    assert server_settings().warm_model is None
    assert server_settings(warm_model=text).warm_model is None


def test_flags_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BGONE_PORT", "9000")
    monkeypatch.setenv("BGONE_API_KEYS", "env-key")
    values = server_settings(port=9100, api_keys=["flag-key"])
    assert values.port == 9100 and values.api_keys == ["flag-key"]


@pytest.mark.parametrize(
    ("variable", "text", "named", "form"),
    [
        ("BGONE_PORT", "eighty", "BGONE_PORT", "an integer"),
        ("BGONE_BATCH_SIZE", "0", "BGONE_BATCH_SIZE", "an integer"),
        ("BGONE_FETCH_TIMEOUT", "soon", "BGONE_FETCH_TIMEOUT", "a number"),
        ("BGONE_OPEN_ACCESS", "maybe", "BGONE_OPEN_ACCESS", "a boolean"),
        ("BGONE_API_KEYS", '["a", ', "BGONE_API_KEYS", "a comma-separated list"),
        ("BGONE_MODEL_MAP", "{not json", "BGONE_MODEL_MAP", "a JSON object"),
        ("BGONE_MODEL_MAP", '{"v2": "hr"}', "BGONE_MODEL_MAP", "a JSON object"),
        ("BGONE_ROLE", "gateway", "BGONE_ROLE", "'all' or 'api'"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_form_once(variable: str, text: str, named: str, form: str, monkeypatch) -> None:
    monkeypatch.setenv(variable, text)
    with pytest.raises(SettingsError) as caught:
        server_settings()
    message = str(caught.value)
    assert message.count(named) == 1 and form in message, message
    assert "EnvSettingsSource" not in message and "pydantic" not in message.lower()


def test_bgone_serve_reports_a_bad_variable_in_one_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "BGONE_PORT": "eighty", "BGONE_OPEN_ACCESS": "1"}
    bgone = Path(sys.executable).with_name("bgone")
    proc = subprocess.run([str(bgone), "serve"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "BGONE_PORT" in lines[0] and "an integer" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_readme_forms_start_the_server(tmp_path: Path) -> None:
    """BGONE_API_KEYS=a,b, BGONE_CORS_ORIGINS=... and BGONE_ALLOWED_HOSTS=... in the comma form: the server
    builds its app (it stops right after, having been asked for --help of nothing else)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BGONE_API_KEYS": "key-one,key-two",
        "BGONE_CORS_ORIGINS": "https://app.example,https://admin.example",
        "BGONE_ALLOWED_HOSTS": "images.internal",
        "BGONE_DATA_DIR": str(tmp_path / "data"),
        "BGONE_ROLE": "api",
    }
    probe = (
        "from bgone.service.app import create_app; from bgone.settings import server_settings\n"
        "s = server_settings(); create_app(s); print(s.api_keys, s.cors_origins, s.allowed_hosts)"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == (
        "['key-one', 'key-two'] ['https://app.example', 'https://admin.example'] ['images.internal']"
    )


def test_config_files_toml_and_json(tmp_path: Path) -> None:
    toml = tmp_path / "bgone.toml"
    toml.write_text('port = 9200\napi_keys = ["k"]\n[model_map]\n"General Use (Heavy)" = "hr"\n')
    values = server_settings(**load_config_file(toml))
    assert values.port == 9200 and values.api_keys == ["k"] and values.model_names("v2")["General Use (Heavy)"] == "hr"
    json_file = tmp_path / "bgone.json"
    json_file.write_text(json.dumps({"batch_size": 2, "cors_origins": "https://a.example"}))
    values = server_settings(**load_config_file(json_file))
    assert values.batch_size == 2 and values.cors_origins == ["https://a.example"]
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(SettingsError, match="must hold a table"):
        load_config_file(bad)
    with pytest.raises(SettingsError, match="unknown setting 'colour'"):
        server_settings(colour="blue")


def test_model_map_files_take_both_forms_and_rembg_names(tmp_path: Path) -> None:
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"birefnet-general": "hr", "General Use (Heavy)": "hr"}))
    assert load_model_map(flat)["rembg"] == {"birefnet-general": "hr"}
    assert load_model_map(flat)["v1"] == {"General Use (Heavy)": "hr"}
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"v2": {}, "rembg": {"birefnet-portrait": "/models/p.pth"}}))
    values = ServerSettings(data_dir=tmp_path, open_access=True, model_map=load_model_map(nested))
    assert values.model_names("rembg")["birefnet-portrait"] == "/models/p.pth"
    assert values.model_names("rembg")["birefnet-dis"] == "dis"
    assert values.model_names("v2") == DEFAULT_MODEL_MAP["v2"]
    missing = tmp_path / "missing.json"
    with pytest.raises(SettingsError, match="cannot read the model map"):
        load_model_map(missing)


# -- the engine's variables: read on every call, never at import ------------------------------------


def test_model_dir_and_registry_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BGONE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("BGONE_MODELS_FILE", str(tmp_path / "models.json"))
    assert settings.model_dir() == tmp_path / "models" and settings.models_file() == tmp_path / "models.json"
    monkeypatch.delenv("BGONE_MODEL_DIR")
    monkeypatch.delenv("BGONE_MODELS_FILE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert settings.model_dir() == tmp_path / "cache" / "bgone" / "models"
    assert settings.models_file() == tmp_path / "config" / "bgone" / "models.json"


@pytest.mark.parametrize(
    ("hf", "bgone", "offline"), [("1", None, True), (None, "true", True), ("0", "off", False), (None, None, False)]
)
def test_offline_mode(hf: str | None, bgone: str | None, offline: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("HF_HUB_OFFLINE", hf), ("BGONE_OFFLINE", bgone)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert settings.offline() is offline


def test_a_bad_engine_flag_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("BGONE_OFFLINE", "sometimes")
    with pytest.raises(SettingsError, match=r"BGONE_OFFLINE='sometimes': expected a boolean"):
        settings.offline()
    monkeypatch.setenv("BGONE_MALLOC_TUNING", "sometimes")
    with pytest.raises(SettingsError, match="BGONE_MALLOC_TUNING"):
        settings.malloc_tuning()


def test_hugging_face_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert settings.hf_cache_dir() == str(tmp_path / "hub-cache")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert settings.hf_cache_dir() == str(tmp_path / "hf" / "hub")
    monkeypatch.delenv("HF_HOME")
    assert settings.hf_cache_dir() is None


def test_allocator_tuning_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BGONE_MALLOC_TUNING", raising=False)
    assert settings.malloc_tuning() is True
    monkeypatch.setenv("BGONE_MALLOC_TUNING", "0")
    assert settings.malloc_tuning() is False


def test_bgone_model_map_applies_to_python_names_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from bgone.weights.registry import REGISTRY

    monkeypatch.setenv("BGONE_MODEL_MAP", json.dumps({"General Use (Heavy)": "hr"}))
    assert settings.model_names("v2")["General Use (Heavy)"] == "hr"
    assert REGISTRY.get("General Use (Heavy)").name == "hr"
    monkeypatch.setenv("BGONE_MODEL_MAP", "[]")
    with pytest.raises(SettingsError, match="BGONE_MODEL_MAP must be a JSON object"):
        settings.model_names("v2")


def test_nothing_is_read_at_import(tmp_path: Path) -> None:
    """An unreadable registry file and bad variables do not break ``import bgone`` or the CLI's import."""
    (tmp_path / "models.json").write_text("{broken")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BGONE_MODELS_FILE": str(tmp_path / "models.json"),
        "BGONE_MODEL_MAP": "{broken",
        "BGONE_OFFLINE": "sometimes",
    }
    probe = "import bgone, bgone.cli, bgone.weights.registry, bgone.service.app; print('imported')"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert proc.stdout.strip() == "imported"
