"""The Storage contract: every behaviour the protocol in ``bgone.service.storage.base`` promises, written
once. Each backend's test module subclasses :class:`StorageContract` as ``TestStorageContract`` and
provides a ``storage`` fixture: a fresh, empty storage.

Checked here: round trips of bytes, content type and name; listing a prefix's older files; custom prefixes and empty files; unique,
unguessable keys; caller-chosen key ids (each used once); sanitised stored names and content types; the
key rules of ``validate_key`` on every method; delete (validates every key first, ignores missing ones,
keeps other files); missing keys; concurrent puts; ``url_for`` (None, or a URL string). Backend-only
behaviour (local paths and sidecars, S3 metadata and presigned URLs, ...) stays in the backend's module.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from bgone.service.storage import Storage, StoredFile

KEY = re.compile(r"^outputs/[0-9a-f]{32}/[^/]+$")

# Client-supplied file names and what they are stored as.
FILE_NAMES = [
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
]

# Keys every method refuses with ValueError("invalid storage key").
INVALID_KEYS = [
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
    "outputs/" + "a" * 600,
]


def missing_key() -> str:
    """A well-formed key nothing was stored under."""
    return f"outputs/{uuid.uuid4().hex}/nope.png"


def assert_url_or_none(url: str | None) -> None:
    """``url_for``'s answer: None (the service serves the file) or an absolute http(s) URL."""
    if url is not None:
        assert isinstance(url, str)
        parts = urlsplit(url)
        assert parts.scheme in ("http", "https") and parts.netloc, url


class StorageContract:
    """Subclass as ``TestStorageContract`` in a backend's test module (with a ``storage`` fixture)."""

    def test_implements_protocol(self, storage: Storage) -> None:
        assert isinstance(storage, Storage)

    # -- put and read back --------------------------------------------------------------------------

    def test_round_trip(self, storage: Storage) -> None:
        data = b"\x89PNG fake bytes" * 100
        stored = storage.put(data, file_name="cut out.png", content_type="image/png")
        assert KEY.match(stored.key) and stored.key.endswith("/cut_out.png")
        assert stored == StoredFile(key=stored.key, file_name="cut_out.png", content_type="image/png", size=len(data))
        assert storage.exists(stored.key)
        assert storage.get(stored.key) == data
        assert storage.stat(stored.key) == stored
        path = storage.path(stored.key)  # a local file to serve, or None for a remote backend
        assert path is None or path.read_bytes() == data
        assert_url_or_none(storage.url_for(stored.key))

        storage.delete([stored.key])
        assert not storage.exists(stored.key)
        assert storage.stat(stored.key) is None and storage.path(stored.key) is None
        with pytest.raises(FileNotFoundError):
            storage.get(stored.key)
        storage.delete([stored.key])  # deleting again is fine
        storage.delete([])

    def test_custom_prefix_and_empty_file(self, storage: Storage) -> None:
        stored = storage.put(b"", file_name="", content_type="", prefix="uploads")
        assert stored.key.startswith("uploads/") and stored.file_name == "file"
        assert stored.content_type == "application/octet-stream" and stored.size == 0
        assert storage.get(stored.key) == b""
        assert storage.stat(stored.key) == stored
        with pytest.raises(ValueError):
            storage.put(b"x", file_name="a", content_type="text/plain", prefix="../etc")

    def test_chosen_key_id(self, storage: Storage) -> None:
        key_id = uuid.uuid4().hex
        stored = storage.put(
            b"bytes", file_name="my photo.png", content_type="image/png", prefix="uploads", key_id=key_id
        )
        assert stored.key == f"uploads/{key_id}/my_photo.png"
        assert storage.get(stored.key) == b"bytes" and storage.stat(stored.key) == stored
        for name in ("my photo.png", "other.png"):  # a key id is used once, whatever the name
            with pytest.raises(FileExistsError):
                storage.put(b"again", file_name=name, content_type="image/png", prefix="uploads", key_id=key_id)
        assert storage.get(stored.key) == b"bytes"
        # The same id under another prefix is another key.
        other = storage.put(b"x", file_name="a", content_type="text/plain", prefix="outputs", key_id=key_id)
        assert other.key == f"outputs/{key_id}/a"
        for bad in ("", "../x", "A" * 32, "0" * 31, "0" * 33, key_id + "/x", "g" * 32):
            with pytest.raises(ValueError):
                storage.put(b"x", file_name="a", content_type="text/plain", key_id=bad)

    def test_content_type_with_parameters_is_kept(self, storage: Storage) -> None:
        stored = storage.put(b"hello", file_name="a.txt", content_type="text/plain; charset=utf-8")
        assert stored.content_type == "text/plain; charset=utf-8"
        assert storage.stat(stored.key) == StoredFile(stored.key, "a.txt", "text/plain; charset=utf-8", 5)

    def test_keys_are_unique_and_unguessable(self, storage: Storage) -> None:
        keys = {storage.put(b"x", file_name="same.png", content_type="image/png").key for _ in range(50)}
        assert len(keys) == 50
        tokens = {k.split("/")[1] for k in keys}
        assert len(tokens) == 50 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)

    def test_concurrent_puts_get_their_own_keys(self, storage: Storage) -> None:
        with ThreadPoolExecutor(8) as pool:
            stored = list(
                pool.map(lambda i: storage.put(b"%d" % i, file_name="t.txt", content_type="text/plain"), range(24))
            )
        assert len({s.key for s in stored}) == 24
        assert [storage.get(s.key) for s in stored] == [b"%d" % i for i in range(24)]

    # -- client-supplied names and types ------------------------------------------------------------

    def test_stored_name_is_sanitised(self, storage: Storage) -> None:
        stored = storage.put(b"x", file_name="../../etc/passwd", content_type="text/plain\r\nX-Evil: 1")
        assert stored.file_name == "passwd" and stored.key.endswith("/passwd")
        assert stored.content_type == "application/octet-stream"  # header injection refused
        assert storage.get(stored.key) == b"x"
        assert storage.stat(stored.key) == stored

    def test_hostile_file_names_are_stored_sanitised(self, storage: Storage) -> None:
        for raw, expected in FILE_NAMES:
            stored = storage.put(b"n", file_name=raw, content_type="image/png")  # type: ignore[arg-type]
            assert (stored.file_name, stored.key.rsplit("/", 1)[-1]) == (expected, expected), raw
            assert storage.stat(stored.key) == StoredFile(stored.key, expected, "image/png", 1), raw
            assert storage.get(stored.key) == b"n", raw

    def test_long_file_names_keep_their_extension(self, storage: Storage) -> None:
        for raw, ext in [("a" * 500 + ".png", ".png"), ("é" * 300 + ".jpeg", ".jpeg")]:
            stored = storage.put(b"x", file_name=raw, content_type="image/png")
            assert stored.file_name.endswith(ext) and len(stored.file_name.encode()) <= 128
            stored.file_name.encode().decode()  # not cut inside a character
            assert stored.key.endswith("/" + stored.file_name) and storage.get(stored.key) == b"x"

    # -- keys ---------------------------------------------------------------------------------------

    @pytest.mark.parametrize("key", INVALID_KEYS)
    def test_invalid_keys_rejected(self, storage: Storage, key: str) -> None:
        for call in (storage.get, storage.path, storage.exists, storage.stat, storage.url_for):
            with pytest.raises(ValueError, match="invalid storage key"):
                call(key)
        with pytest.raises(ValueError, match="invalid storage key"):
            storage.delete([key])

    def test_missing_keys(self, storage: Storage) -> None:
        missing = missing_key()
        with pytest.raises(FileNotFoundError):
            storage.get(missing)
        assert storage.stat(missing) is None
        assert not storage.exists(missing)
        assert storage.path(missing) is None
        assert_url_or_none(storage.url_for(missing))  # no request needed: may still be a URL
        storage.delete([missing])  # ignored

    # -- stored_before (retention sweeps) ------------------------------------------------------------

    def test_stored_before_lists_the_older_files_of_one_prefix(self, storage: Storage) -> None:
        started = time.time()
        uploads = [
            storage.put(b"u", file_name=f"u{i}.png", content_type="image/png", prefix="uploads") for i in range(3)
        ]
        output = storage.put(b"o", file_name="o.png", content_type="image/png", prefix="outputs")
        later = time.time() + 5
        assert sorted(storage.stored_before("uploads", later)) == sorted(u.key for u in uploads)
        assert storage.stored_before("outputs", later) == [output.key]
        assert storage.stored_before("uploads", started - 60) == []  # all newer than that
        assert storage.stored_before("uploadparts", later) == []  # a prefix never used
        storage.delete(storage.stored_before("uploads", later))
        assert storage.stored_before("uploads", later) == [] and storage.exists(output.key)
        with pytest.raises(ValueError):
            storage.stored_before("../etc", later)

    # -- delete -------------------------------------------------------------------------------------

    def test_delete_validates_all_keys_first(self, storage: Storage) -> None:
        stored = storage.put(b"x", file_name="a.png", content_type="image/png")
        with pytest.raises(ValueError):
            storage.delete([stored.key, "../evil"])
        assert storage.exists(stored.key)

    def test_delete_keeps_other_files(self, storage: Storage) -> None:
        a = storage.put(b"a", file_name="a.png", content_type="image/png")
        b = storage.put(b"b", file_name="b.png", content_type="image/png")
        storage.delete([a.key, missing_key(), a.key])  # missing and repeated keys are fine
        assert not storage.exists(a.key) and storage.get(b.key) == b"b"
        assert storage.stat(b.key) == b
