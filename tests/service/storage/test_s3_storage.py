"""S3Storage against moto's standalone S3-compatible server on 127.0.0.1.

The tests use moto's server (over real HTTP, with dummy credentials) because MinIO is not
installable here. The Storage contract (storage_contract.py) runs on a bucket under a key prefix;
the rest is S3's own: objects under the configured prefix, object metadata, large objects, keys
refused before any request, bucket creation, batched deletes, presigned URLs, the endpoint from the
environment and s3:// URLs in open_storage. All traffic stays on loopback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

from storage_contract import INVALID_KEYS, StorageContract  # noqa: E402

from bgone.service.storage import StoredFile, open_storage  # noqa: E402
from bgone.service.storage import s3 as s3_module  # noqa: E402
from bgone.service.storage.s3 import S3Storage  # noqa: E402


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def isolate_aws(env: pytest.MonkeyPatch, scratch: Path) -> None:
    """Dummy credentials only; no profile, config file or proxy from the machine running the tests."""
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", "us-east-1")
    env.setenv("AWS_CONFIG_FILE", str(scratch / "no-aws-config"))
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(scratch / "no-aws-credentials"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    env.setenv("NO_PROXY", "127.0.0.1,localhost")
    env.setenv("no_proxy", "127.0.0.1,localhost")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    isolate_aws(monkeypatch, tmp_path)


def new_bucket() -> str:
    return f"bgone-test-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="module")
def shared_client(endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One client, made by S3Storage itself, for the storages of the contract tests: a boto3 client
    takes about 0.1 s to make. The tests below that build their own storage still make their own."""
    with pytest.MonkeyPatch.context() as env:
        isolate_aws(env, tmp_path_factory.mktemp("aws"))
        return S3Storage(new_bucket(), endpoint_url=endpoint)._make_client()


@pytest.fixture
def storage(endpoint: str, shared_client: Any) -> S3Storage:
    """A new bucket (created on first use), keys under the prefix svc/blobs."""
    return S3Storage(new_bucket(), "svc/blobs", endpoint_url=endpoint, client=shared_client, create_bucket=True)


def object_keys(storage: S3Storage) -> list[str]:
    response = storage.client.list_objects_v2(Bucket=storage.bucket)
    return sorted(o["Key"] for o in response.get("Contents", []))


class TestStorageContract(StorageContract):
    """The shared Storage contract, on a bucket under the key prefix svc/blobs."""


def test_objects_live_under_the_configured_prefix(storage: S3Storage) -> None:
    assert repr(storage) == f"S3Storage('s3://{storage.bucket}/svc/blobs')"
    stored = storage.put(b"\x89PNG fake bytes", file_name="cut out.png", content_type="image/png")
    hostile = storage.put(b"x", file_name="../../etc/passwd", content_type="text/plain")
    assert object_keys(storage) == sorted(f"svc/blobs/{k}" for k in (stored.key, hostile.key))
    assert storage.path(stored.key) is None  # remote backend
    assert storage.url_for(stored.key) is None  # presign off: the API node serves the bytes
    storage.delete([stored.key, hostile.key])
    assert object_keys(storage) == []


def test_metadata_kept(storage: S3Storage) -> None:
    stored = storage.put(b"x", file_name="../ünï cödé.webp", content_type="image/webp")
    assert stored.file_name == "ünï_cödé.webp"
    head = storage.client.head_object(Bucket=storage.bucket, Key=f"svc/blobs/{stored.key}")
    assert head["ContentType"] == "image/webp"
    assert head["Metadata"]["file-name"] == "%C3%BCn%C3%AF_c%C3%B6d%C3%A9.webp"
    assert head["Metadata"]["original-file-name"] == "..%2F%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.webp"
    assert "filename*=UTF-8''%C3%BCn%C3%AF_c%C3%B6d%C3%A9.webp" in head["ContentDisposition"]
    assert storage.stat(stored.key) == StoredFile(stored.key, "ünï_cödé.webp", "image/webp", 1)


def test_large_object(storage: S3Storage) -> None:
    data = uuid.uuid4().bytes * (5 * 1024 * 1024 // 16)  # 5 MiB
    stored = storage.put(data, file_name="big.bin", content_type="application/octet-stream")
    assert stored.size == len(data) == 5 * 1024 * 1024
    assert storage.get(stored.key) == data
    assert storage.stat(stored.key).size == len(data)  # type: ignore[union-attr]


def test_invalid_keys_rejected_before_any_request(endpoint: str) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint, presign=True)  # no bucket: a request would fail
    for key in INVALID_KEYS:
        for call in (storage.get, storage.path, storage.exists, storage.stat, storage.url_for):
            with pytest.raises(ValueError, match="invalid storage key"):
                call(key)
        with pytest.raises(ValueError, match="invalid storage key"):
            storage.delete([key])


def test_missing_bucket_is_not_created_by_default(endpoint: str) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint)
    with pytest.raises(Exception, match="NoSuchBucket"):
        storage.put(b"x", file_name="a.png", content_type="image/png")


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


def test_concurrent_first_use_makes_one_client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = S3Storage(new_bucket(), endpoint_url=endpoint, create_bucket=True)
    made: list[Any] = []
    make = storage._make_client

    def counted() -> Any:
        made.append(make())
        return made[-1]

    monkeypatch.setattr(storage, "_make_client", counted)
    with ThreadPoolExecutor(8) as pool:
        stored = list(
            pool.map(lambda i: storage.put(b"%d" % i, file_name="t.txt", content_type="text/plain"), range(24))
        )
    assert len(made) == 1 and storage.client is made[0]  # shared by every thread
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
