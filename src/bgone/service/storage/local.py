"""``Storage`` on the local file system: ``root/<prefix>/<32 hex>/<file name>`` plus a sidecar
``.meta.json`` in the same directory holding the content type and the original file name."""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bgone.service.storage.base import (
    DEFAULT_CONTENT_TYPE,
    StoredFile,
    sanitize_content_type,
    sanitize_file_name,
    validate_key,
    validate_key_id,
    validate_prefix,
)

__all__ = ["META_NAME", "LocalStorage"]

log = logging.getLogger(__name__)

META_NAME = ".meta.json"


class LocalStorage:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    # -- helpers ------------------------------------------------------------------------------

    def _resolve(self, key: str) -> Path:
        """The file for ``key``; ValueError("invalid storage key") for anything that could escape
        root (absolute, "..", backslashes, NUL/control characters, symlinks pointing outside)."""
        candidate = self.root.joinpath(*validate_key(key).split("/"))
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as exc:  # symlink loops and the like
            raise ValueError("invalid storage key") from exc
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise ValueError("invalid storage key")
        return candidate

    @staticmethod
    def _read_meta(file: Path) -> dict[str, Any]:
        try:
            meta = json.loads((file.parent / META_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        # Write next to the target and rename: a crash leaves a hidden temp file, never a
        # truncated file under a real key; fsync so a COMPLETED job never points at lost data.
        tmp = target.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    # -- Storage ------------------------------------------------------------------------------

    def put(
        self, data: bytes, *, file_name: str, content_type: str, prefix: str = "outputs", key_id: str | None = None
    ) -> StoredFile:
        name = sanitize_file_name(file_name)
        ctype = sanitize_content_type(content_type)
        unique = uuid.uuid4().hex if key_id is None else validate_key_id(key_id)
        key = f"{validate_prefix(prefix)}/{unique}/{name}"
        target = self._resolve(key)
        directory = target.parent
        # A fresh uuid: existing means a bug; a caller's key_id: FileExistsError, that key was used.
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(exist_ok=False)
        meta = {"content_type": ctype, "file_name": name, "original_file_name": file_name, "size": len(data)}
        try:
            # Meta first, data last: the data file's appearance is what makes the key exist.
            self._write_atomic(directory / META_NAME, json.dumps(meta, ensure_ascii=False).encode())
            self._write_atomic(target, bytes(data))
        except BaseException:
            (directory / META_NAME).unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            _rmdir_quiet(directory)
            raise
        return StoredFile(key=key, file_name=name, content_type=ctype, size=len(data))

    def get(self, key: str) -> bytes:
        file = self._resolve(key)
        if not file.is_file():
            raise FileNotFoundError(key)
        return file.read_bytes()

    def path(self, key: str) -> Path | None:
        file = self._resolve(key)
        return file if file.is_file() else None

    def exists(self, key: str) -> bool:
        return self._resolve(key).is_file()

    def delete(self, keys: Iterable[str]) -> None:
        files = [self._resolve(k) for k in keys]  # validate all before touching anything
        for file in files:
            try:
                file.unlink(missing_ok=True)
                if {p.name for p in file.parent.iterdir()} <= {META_NAME}:
                    # The key directory held only this file: drop the sidecar and the directory.
                    (file.parent / META_NAME).unlink(missing_ok=True)
                    _rmdir_quiet(file.parent)
            except FileNotFoundError:
                continue
            except OSError as exc:  # best effort: one undeletable file must not stop the cleanup
                log.warning("could not delete stored file %s: %s", file, exc)

    def stored_before(self, prefix: str, before: float) -> list[str]:
        folder = self.root / validate_prefix(prefix)
        keys = []
        for directory in _entries(folder):
            for file in _entries(directory):
                # Hidden names are sidecars and temporary files; the data file appears last, by rename.
                if file.name.startswith(".") or not file.is_file() or file.is_symlink():
                    continue
                with contextlib.suppress(OSError):
                    if file.stat().st_mtime < before:
                        keys.append(f"{folder.name}/{directory.name}/{file.name}")
        return keys

    def url_for(self, key: str) -> str | None:
        """None: the service serves local files itself."""
        self._resolve(key)
        return None

    def stat(self, key: str) -> StoredFile | None:
        file = self._resolve(key)
        try:
            size = file.stat().st_size
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not file.is_file():
            return None
        meta = self._read_meta(file)
        ctype = meta.get("content_type") or mimetypes.guess_type(file.name)[0] or DEFAULT_CONTENT_TYPE
        return StoredFile(key=key, file_name=file.name, content_type=str(ctype), size=size)


def _entries(directory: Path) -> list[Path]:
    """The entries of ``directory``; none when it is missing (or is not a directory)."""
    try:
        return list(directory.iterdir())
    except OSError:
        return []


def _rmdir_quiet(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not empty (another file) or already gone
        directory.rmdir()
