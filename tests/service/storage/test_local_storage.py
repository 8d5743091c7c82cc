"""LocalStorage: the Storage contract (storage_contract.py) on a directory, plus what only files do:
paths inside the root (nothing written or left outside it, symlinks out of it refused), the sidecar
holding the type and names, atomic writes, and file:// URLs in open_storage."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from storage_contract import StorageContract

from bgone.service.storage import LocalStorage, StoredFile, open_storage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


class TestStorageContract(StorageContract):
    """The shared Storage contract, on the local file system."""


def test_files_live_under_root_and_leave_nothing_behind(storage: LocalStorage) -> None:
    data = b"\x89PNG fake bytes" * 100
    stored = storage.put(data, file_name="cut out.png", content_type="image/png")
    hostile = storage.put(b"x", file_name="../../etc/passwd", content_type="text/plain")
    for key in (stored.key, hostile.key):
        path = storage.path(key)
        assert path == storage.root / key and path.is_file() and path.is_relative_to(storage.root)
    assert storage.path(stored.key).read_bytes() == data
    assert not (storage.root.parent / "etc").exists()
    assert storage.url_for(stored.key) is None  # the service serves local files itself

    storage.delete([stored.key, hostile.key])
    assert storage.path(stored.key) is None
    assert not (storage.root / stored.key).parent.exists()  # key directory removed with it
    assert files_under(storage.root) == []


def test_sidecar_keeps_type_and_names(storage: LocalStorage) -> None:
    stored = storage.put(b"abc", file_name="../my photo.png", content_type="image/png")
    meta = json.loads((storage.root / stored.key).parent.joinpath(".meta.json").read_text())
    assert meta == {
        "content_type": "image/png",
        "file_name": "my_photo.png",
        "original_file_name": "../my photo.png",
        "size": 3,
    }


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
