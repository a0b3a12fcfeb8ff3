"""The object-store contract. Every backend must pass these same tests.

The `backend` fixture lists them: the local directory, and S3 on a real SeaweedFS
server (a fresh bucket and prefix per test; the server starts once per session and its
failure to start fails these tests).
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import S3Server

from cas.backend import ObjectStore
from cas.digest import Digest, hash_bytes
from cas.errors import DigestMismatch, IntegrityError, ObjectMissing
from cas.local import LocalStore
from cas.s3 import S3Store

MISSING = Digest.parse("blake3:" + "0" * 64)


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield LocalStore.init(tmp_path / "store")
    elif request.param == "s3":
        server: S3Server = request.getfixturevalue("s3_server")
        url = f"s3://{server.new_bucket(create=False)}/{uuid.uuid4().hex[:8]}/store"
        yield S3Store.init(url, client=server.client())


def test_put_then_read_back(backend: ObjectStore) -> None:
    ref = backend.put(io.BytesIO(b"hello"))
    assert ref == hash_bytes(b"hello")
    assert backend.has(ref.digest)
    assert backend.size(ref.digest) == 5
    assert b"".join(backend.open(ref.digest)) == b"hello"


def test_empty_object(backend: ObjectStore) -> None:
    ref = backend.put(io.BytesIO(b""))
    assert ref.size == 0
    assert backend.read_bytes(ref.digest) == b""


def test_multi_chunk_object(backend: ObjectStore) -> None:
    data = os.urandom(3 * (1 << 20) + 17)
    ref = backend.put(io.BytesIO(data))
    assert ref == hash_bytes(data)
    assert backend.read_bytes(ref.digest) == data


def test_put_is_idempotent(backend: ObjectStore) -> None:
    a = backend.put(io.BytesIO(b"same"))
    b = backend.put(io.BytesIO(b"same"))
    assert a == b
    assert list(backend.iterate()) == [a.digest]


def test_iterate_is_sorted(backend: ObjectStore) -> None:
    refs = [backend.put_bytes(bytes([i]) * 10) for i in range(20)]
    assert list(backend.iterate()) == sorted(r.digest for r in refs)


def test_missing_object(backend: ObjectStore) -> None:
    assert not backend.has(MISSING)
    with pytest.raises(ObjectMissing):
        backend.size(MISSING)
    with pytest.raises(ObjectMissing):
        list(backend.open(MISSING))
    with pytest.raises(ObjectMissing):
        backend.delete(MISSING)


def test_delete(backend: ObjectStore) -> None:
    ref = backend.put_bytes(b"gone soon")
    backend.delete(ref.digest)
    assert not backend.has(ref.digest)
    assert list(backend.iterate()) == []


def test_clean_store_fscks_clean(backend: ObjectStore) -> None:
    for i in range(5):
        backend.put_bytes(os.urandom(100 + i))
    assert backend.fsck() == []


def corrupt(backend: ObjectStore, digest: Digest, data: bytes) -> None:
    """Overwrite an object's bytes behind the store's back."""
    if isinstance(backend, S3Store):
        backend.client.put_object(Bucket=backend.bucket, Key=backend.object_key(digest), Body=data)
        return
    assert isinstance(backend, LocalStore)
    path = backend.object_path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


def test_corrupt_object_is_never_served_whole(backend: ObjectStore) -> None:
    data = os.urandom(3 << 20)
    ref = backend.put_bytes(data)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    corrupt(backend, ref.digest, bytes(flipped))
    got = b""
    with pytest.raises(DigestMismatch):
        for chunk in backend.open(ref.digest):
            got += chunk
    assert len(got) < len(data)
    problems = backend.fsck()
    assert [(p.kind, p.digest) for p in problems] == [("mismatch", str(ref.digest))]


def test_verify_checks_size_and_bytes(backend: ObjectStore) -> None:
    ref = backend.put_bytes(b"twelve bytes")
    backend.verify(ref)
    with pytest.raises(IntegrityError, match="promised") as raised:
        backend.verify(type(ref)(ref.digest, 11))
    assert type(raised.value) is IntegrityError  # a size mismatch, not a missing object
