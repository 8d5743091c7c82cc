"""LocalStorage: round trips, key safety, sanitised names, atomic writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bgone.service.storage import LocalStorage, Storage, StoredFile, open_storage, sanitize_file_name

KEY = re.compile(r"^outputs/[0-9a-f]{32}/[^/]+$")


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_implements_protocol(storage: LocalStorage) -> None:
    assert isinstance(storage, Storage)


def test_round_trip(storage: LocalStorage) -> None:
    data = b"\x89PNG fake bytes" * 100
    stored = storage.put(data, file_name="cut out.png", content_type="image/png")
    assert KEY.match(stored.key) and stored.key.endswith("/cut_out.png")
    assert stored == StoredFile(key=stored.key, file_name="cut_out.png", content_type="image/png", size=len(data))
    assert storage.exists(stored.key)
    assert storage.get(stored.key) == data
    path = storage.path(stored.key)
    assert path is not None and path.read_bytes() == data and path.is_relative_to(storage.root)
    assert storage.stat(stored.key) == stored

    storage.delete([stored.key])
    assert not storage.exists(stored.key)
    assert storage.stat(stored.key) is None and storage.path(stored.key) is None
    with pytest.raises(FileNotFoundError):
        storage.get(stored.key)
    assert not (storage.root / stored.key).parent.exists()  # key directory removed with it
    assert files_under(storage.root) == []
    storage.delete([stored.key])  # deleting again is fine


def test_custom_prefix_and_empty_file(storage: LocalStorage) -> None:
    stored = storage.put(b"", file_name="", content_type="", prefix="uploads")
    assert stored.key.startswith("uploads/") and stored.file_name == "file"
    assert stored.content_type == "application/octet-stream" and stored.size == 0
    assert storage.get(stored.key) == b""
    with pytest.raises(ValueError):
        storage.put(b"x", file_name="a", content_type="text/plain", prefix="../etc")


def test_keys_are_unique_and_unguessable(storage: LocalStorage) -> None:
    keys = {storage.put(b"x", file_name="same.png", content_type="image/png").key for _ in range(50)}
    assert len(keys) == 50
    tokens = {k.split("/")[1] for k in keys}
    assert len(tokens) == 50 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("..", "file"),
        ("...", "file"),
        (".hidden", "hidden"),
        ("/", "file"),
        (None, "file"),
        ("a\x00b\nc\x7f.png", "abc.png"),
        ("my photo (1).png", "my_photo_(1).png"),
        ('x<y>:"|?*.jpg', "x_y______.jpg"),
        ("ünïcödé.webp", "ünïcödé.webp"),
    ],
)
def test_sanitize_file_name(raw: str | None, expected: str) -> None:
    assert sanitize_file_name(raw) == expected


def test_long_file_name_keeps_extension() -> None:
    name = sanitize_file_name("a" * 500 + ".png")
    assert name.endswith(".png") and len(name.encode()) <= 128
    multibyte = sanitize_file_name("é" * 300 + ".jpeg")
    assert multibyte.endswith(".jpeg") and len(multibyte.encode()) <= 128
    multibyte.encode().decode()  # not cut inside a character


def test_stored_name_is_sanitised(storage: LocalStorage) -> None:
    stored = storage.put(b"x", file_name="../../etc/passwd", content_type="text/plain\r\nX-Evil: 1")
    assert stored.file_name == "passwd" and stored.key.endswith("/passwd")
    assert stored.content_type == "application/octet-stream"  # header injection refused
    assert (storage.root / stored.key).is_file()
    assert not (storage.root.parent / "etc").exists()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../outside",
        "outputs/../../outside",
        "outputs/abc/../../../x",
        "outputs\\abc\\x",
        "outputs/abc/x\x00.png",
        "outputs//x",
        "outputs/abc/.meta.json",
        "outputs",
        "outputs/abc/",
        "C:/windows",
    ],
)
def test_traversal_keys_rejected(storage: LocalStorage, key: str) -> None:
    for call in (storage.get, storage.path, storage.exists, storage.stat):
        with pytest.raises(ValueError, match="invalid storage key"):
            call(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.delete([key])


def test_symlink_out_of_root_rejected(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (storage.root / "outputs").mkdir(exist_ok=True)
    os.symlink(outside, storage.root / "outputs" / "evil")
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.get("outputs/evil/secret.txt")
    with pytest.raises(ValueError):
        storage.delete(["outputs/evil/secret.txt"])
    assert (outside / "secret.txt").exists()


def test_delete_validates_all_keys_first(storage: LocalStorage) -> None:
    stored = storage.put(b"x", file_name="a.png", content_type="image/png")
    with pytest.raises(ValueError):
        storage.delete([stored.key, "../evil"])
    assert storage.exists(stored.key)


def test_delete_keeps_other_files(storage: LocalStorage) -> None:
    a = storage.put(b"a", file_name="a.png", content_type="image/png")
    b = storage.put(b"b", file_name="b.png", content_type="image/png")
    storage.delete([a.key])
    assert not storage.exists(a.key) and storage.get(b.key) == b"b"


def test_atomic_write_leaves_nothing_on_error(storage: LocalStorage, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        storage.put(b"x" * 10_000, file_name="big.png", content_type="image/png")
    monkeypatch.undo()
    assert files_under(storage.root) == []
    assert not any(p for p in (storage.root / "outputs").iterdir())  # key directory removed too


def test_stat_without_sidecar_guesses_type(storage: LocalStorage) -> None:
    stored = storage.put(b"x", file_name="a.webp", content_type="image/webp")
    (storage.root / stored.key).parent.joinpath(".meta.json").unlink()
    assert storage.stat(stored.key) == StoredFile(stored.key, "a.webp", "image/webp", 1)


def test_open_storage(tmp_path: Path) -> None:
    default = open_storage(None, tmp_path)
    assert isinstance(default, LocalStorage) and default.root == (tmp_path / "files").resolve()
    explicit = open_storage(f"file://{tmp_path}/blobs", tmp_path)
    assert isinstance(explicit, LocalStorage) and explicit.root == (tmp_path / "blobs").resolve()
    with pytest.raises(ValueError, match="not available yet"):
        open_storage("gs://bucket/prefix", tmp_path)
    with pytest.raises(ValueError):
        open_storage("ftp://host/x", tmp_path)
