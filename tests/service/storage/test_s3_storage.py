"""S3Storage against moto's standalone S3-compatible server on 127.0.0.1.

The tests use moto's server (over real HTTP, with dummy credentials) because MinIO is not
installable here; the same behaviours as the LocalStorage tests are checked, plus object metadata,
batched deletes and presigned URLs. All traffic stays on loopback.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from bgone.service.storage import Storage, StoredFile, open_storage  # noqa: E402
from bgone.service.storage import s3 as s3_module  # noqa: E402
from bgone.service.storage.s3 import S3Storage  # noqa: E402

KEY = re.compile(r"^outputs/[0-9a-f]{32}/[^/]+$")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials only; no profile, config file or proxy from the machine running the tests."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


def new_bucket() -> str:
    return f"bgone-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def storage(endpoint: str) -> S3Storage:
    return S3Storage(new_bucket(), "svc/blobs", endpoint_url=endpoint, create_bucket=True)


def object_keys(storage: S3Storage) -> list[str]:
    response = storage.client.list_objects_v2(Bucket=storage.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


def test_implements_protocol(storage: S3Storage) -> None:
    assert isinstance(storage, Storage)
    assert repr(storage) == f"S3Storage('s3://{storage.bucket}/svc/blobs')"


def test_round_trip(storage: S3Storage) -> None:
    data = b"\x89PNG fake bytes" * 100
    stored = storage.put(data, file_name="cut out.png", content_type="image/png")
    assert KEY.match(stored.key) and stored.key.endswith("/cut_out.png")
    assert stored == StoredFile(key=stored.key, file_name="cut_out.png", content_type="image/png", size=len(data))
    assert object_keys(storage) == [f"svc/blobs/{stored.key}"]  # under the configured prefix
    assert storage.exists(stored.key)
    assert storage.get(stored.key) == data
    assert storage.path(stored.key) is None  # remote backend
    assert storage.stat(stored.key) == stored
    assert storage.url_for(stored.key) is None  # presign off: the API node serves the bytes

    storage.delete([stored.key])
    assert not storage.exists(stored.key)
    assert storage.stat(stored.key) is None and storage.path(stored.key) is None
    with pytest.raises(FileNotFoundError):
        storage.get(stored.key)
    assert object_keys(storage) == []
    storage.delete([stored.key])  # deleting again is fine
    storage.delete([])


def test_metadata_kept(storage: S3Storage) -> None:
    stored = storage.put(b"x", file_name="../ünï cödé.webp", content_type="image/webp")
    assert stored.file_name == "ünï_cödé.webp"
    head = storage.client.head_object(Bucket=storage.bucket, Key=f"svc/blobs/{stored.key}")
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"]["file-name"] == "%C3%BCn%C3%AF_c%C3%B6d%C3%A9.webp"
    assert head["Metadata"]["original-file-name"] == "..%2F%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.webp"
    assert "filename*=UTF-8''%C3%BCn%C3%AF_c%C3%B6d%C3%A9.webp" in head["ContentDisposition"]
    assert storage.stat(stored.key) == StoredFile(stored.key, "ünï_cödé.webp", "image/webp", 1)


def test_content_type_with_parameters(storage: S3Storage) -> None:
    stored = storage.put(b"hello", file_name="a.txt", content_type="text/plain; charset=utf-8")
    assert storage.stat(stored.key) == StoredFile(stored.key, "a.txt", "text/plain; charset=utf-8", 5)


def test_custom_prefix_and_empty_file(storage: S3Storage) -> None:
    stored = storage.put(b"", file_name="", content_type="", prefix="uploads")
    assert stored.key.startswith("uploads/") and stored.file_name == "file"
    assert stored.content_type == "application/octet-stream" and stored.size == 0
    assert storage.get(stored.key) == b""
    assert storage.stat(stored.key) == stored
    with pytest.raises(ValueError):
        storage.put(b"x", file_name="a", content_type="text/plain", prefix="../etc")


def test_keys_are_unique_and_unguessable(storage: S3Storage) -> None:
    keys = {storage.put(b"x", file_name="same.png", content_type="image/png").key for _ in range(30)}
    assert len(keys) == 30
    tokens = {k.split("/")[1] for k in keys}
    assert len(tokens) == 30 and all(re.fullmatch(r"[0-9a-f]{32}", t) for t in tokens)


def test_stored_name_is_sanitised(storage: S3Storage) -> None:
    stored = storage.put(b"x", file_name="../../etc/passwd", content_type="text/plain\r\nX-Evil: 1")
    assert stored.file_name == "passwd" and stored.key.endswith("/passwd")
    assert stored.content_type == "application/octet-stream"  # header injection refused
    assert object_keys(storage) == [f"svc/blobs/{stored.key}"]


def test_large_object(storage: S3Storage) -> None:
    data = uuid.uuid4().bytes * (5 * 1024 * 1024 // 16)  # 5 MiB
    stored = storage.put(data, file_name="big.bin", content_type="application/octet-stream")
    assert stored.size == len(data) == 5 * 1024 * 1024
    assert storage.get(stored.key) == data
    assert storage.stat(stored.key).size == len(data)  # type: ignore[union-attr]


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
        "outputs/" + "a" * 600,
    ],
)
def test_invalid_keys_rejected(endpoint: str, key: str) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint, presign=True)  # never touched: no bucket
    for call in (storage.get, storage.path, storage.exists, storage.stat, storage.url_for):
        with pytest.raises(ValueError, match="invalid storage key"):
            call(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.delete([key])


def test_missing_keys(storage: S3Storage) -> None:
    missing = f"outputs/{uuid.uuid4().hex}/nope.png"
    with pytest.raises(FileNotFoundError):
        storage.get(missing)
    assert storage.stat(missing) is None
    assert not storage.exists(missing)
    storage.delete([missing])  # ignored


def test_missing_bucket_is_not_created_by_default(endpoint: str) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint)
    with pytest.raises(Exception, match="NoSuchBucket"):
        storage.put(b"x", file_name="a.png", content_type="image/png")


def test_delete_validates_all_keys_first(storage: S3Storage) -> None:
    stored = storage.put(b"x", file_name="a.png", content_type="image/png")
    with pytest.raises(ValueError):
        storage.delete([stored.key, "../evil"])
    assert storage.exists(stored.key)


def test_delete_batches_and_keeps_other_files(storage: S3Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_module, "_DELETE_BATCH", 2)
    calls: list[int] = []
    real = storage.client.delete_objects

    def counting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Delete"]["Objects"]))
        return real(**kwargs)

    monkeypatch.setattr(storage.client, "delete_objects", counting)
    doomed = [storage.put(b"x", file_name=f"{i}.png", content_type="image/png").key for i in range(4)]
    keep = storage.put(b"b", file_name="b.png", content_type="image/png")
    storage.delete([*doomed, f"outputs/{uuid.uuid4().hex}/missing.png", doomed[0]])
    assert calls == [2, 2, 1]  # duplicates dropped, 1000-key batches (2 here)
    assert not any(storage.exists(k) for k in doomed)
    assert storage.get(keep.key) == b"b"


def test_stat_without_content_type_guesses(storage: S3Storage) -> None:
    key = f"outputs/{uuid.uuid4().hex}/a.webp"
    storage.client.put_object(Bucket=storage.bucket, Key=f"svc/blobs/{key}", Body=b"x")  # no metadata
    assert storage.stat(key) == StoredFile(key, "a.webp", "image/webp", 1)


def test_presigned_url(endpoint: str) -> None:
    storage = S3Storage(new_bucket(), "p", endpoint_url=endpoint, presign=True, presign_seconds=60, create_bucket=True)
    data = b"\x89PNG presigned" * 1000
    stored = storage.put(data, file_name="out.png", content_type="image/png")
    url = storage.url_for(stored.key)
    assert url is not None and url.startswith(f"{endpoint}/{storage.bucket}/p/outputs/")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=60" in url
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "image/png"
    assert "out.png" in response.headers["content-disposition"]
    storage.delete([stored.key])
    assert httpx.get(url, timeout=10).status_code == 404


def test_concurrent_puts_share_one_client(endpoint: str) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint, create_bucket=True)
    with ThreadPoolExecutor(8) as pool:
        stored = list(
            pool.map(lambda i: storage.put(b"%d" % i, file_name="t.txt", content_type="text/plain"), range(24))
        )
    assert len({s.key for s in stored}) == 24
    assert [storage.get(s.key) for s in stored] == [b"%d" % i for i in range(24)]


def test_open_storage(endpoint: str, tmp_path: Path) -> None:
    bucket = new_bucket()
    storage = open_storage(f"s3://{bucket}/some/prefix?endpoint={endpoint}&create_bucket=1", tmp_path)
    assert isinstance(storage, S3Storage)
    assert (storage.bucket, storage.prefix, storage.endpoint_url) == (bucket, "some/prefix", endpoint)
    assert not storage.presign and storage.url_for("outputs/abc/x.png") is None
    stored = storage.put(b"data", file_name="x.png", content_type="image/png")
    assert object_keys(storage) == [f"some/prefix/{stored.key}"]
    assert storage.get(stored.key) == b"data"

    same = open_storage(f"s3://{bucket}/some/prefix/?presign=1&presign_seconds=120&endpoint={endpoint}", tmp_path)
    assert isinstance(same, S3Storage) and same.presign and same.presign_seconds == 120
    assert same.get(stored.key) == b"data"  # the bucket already exists; create_bucket not needed
    url = same.url_for(stored.key)
    assert url is not None and httpx.get(url, timeout=10).content == b"data"

    bare = open_storage(f"s3://{bucket}", tmp_path)
    assert isinstance(bare, S3Storage) and bare.prefix == "" and bare.endpoint_url is None


def test_open_storage_endpoint_from_environment(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)  # boto3 reads it itself
    storage = open_storage(f"s3://{new_bucket()}?create_bucket=1", tmp_path)
    stored = storage.put(b"env", file_name="e.txt", content_type="text/plain")
    assert storage.get(stored.key) == b"env"


@pytest.mark.parametrize(
    "url",
    [
        "s3://",
        "s3:///prefix",
        "s3://user:pw@bucket/x",
        "s3://bucket:9000/x",
        "s3://bucket/x?presign=maybe",
        "s3://bucket/x?presign_seconds=soon",
        "s3://bucket/x?presign_seconds=0",
        "s3://bucket/x?unknown=1",
        "s3://bucket/x?addressing=sideways",
        "s3://bucket/../x",
        "gs://bucket/x",
    ],
)
def test_open_storage_rejects_bad_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        open_storage(url, tmp_path)
