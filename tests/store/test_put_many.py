"""`LocalStore.put_many` and the streaming put: batched durability, same results as `put`."""

from __future__ import annotations

import fcntl
import io
import os
from pathlib import Path
from typing import BinaryIO, cast

import pytest
from conftest import Cli

import cas.local
from cas.digest import hash_bytes
from cas.errors import UsageError
from cas.local import LocalStore


def _files(tmp_path: Path, contents: list[bytes]) -> list[Path]:
    paths = []
    for i, data in enumerate(contents):
        p = tmp_path / f"in{i}"
        p.write_bytes(data)
        paths.append(p)
    return paths


def test_put_many_matches_put_in_order(store: LocalStore, tmp_path: Path) -> None:
    contents = [b"a", b"", b"a", os.urandom(3 << 20), b"b" * 100]
    paths = _files(tmp_path, contents)
    refs = list(store.put_many([*paths[:2], io.BytesIO(b"stream"), *paths[2:]]))
    want = [hash_bytes(c) for c in [*contents[:2], b"stream", *contents[2:]]]
    assert refs == want
    for ref, data in zip(refs, [*contents[:2], b"stream", *contents[2:]], strict=True):
        assert store.read_bytes(ref.digest) == data
    assert store.fsck() == []
    assert list(store.tmp.iterdir()) == []


def test_put_many_dedups_without_writing(store: LocalStore, tmp_path: Path) -> None:
    paths = _files(tmp_path, [b"one", b"two"])
    first = list(store.put_many(paths))
    path = store.object_path(first[0].digest)
    before = os.stat(path).st_ino
    assert list(store.put_many(paths)) == first
    assert os.stat(path).st_ino == before
    assert list(store.tmp.iterdir()) == []


def test_put_many_commits_what_came_before_an_error(store: LocalStore, tmp_path: Path) -> None:
    paths = _files(tmp_path, [b"first", b"second"])
    got = []
    with pytest.raises(UsageError, match="no such file"):
        for ref in store.put_many([paths[0], tmp_path / "missing", paths[1]]):
            got.append(ref)
    assert got == [hash_bytes(b"first")]
    assert store.has(got[0].digest)
    assert not store.has(hash_bytes(b"second").digest)
    assert list(store.tmp.iterdir()) == []


def test_put_many_refuses_a_directory(store: LocalStore, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        list(store.put_many([tmp_path]))


def test_put_many_commits_in_batches(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.local, "BATCH_BYTES", 10)
    syncs: list[list[str]] = []
    real = cas.local._Batch._sync

    def counted(self: cas.local._Batch, paths: list[str]) -> None:
        syncs.append(paths)
        real(self, paths)

    monkeypatch.setattr(cas.local._Batch, "_sync", counted)
    paths = _files(tmp_path, [b"x" * 8, b"y" * 8, b"z" * 8])
    seen = []
    for ref in store.put_many(paths):
        seen.append(ref)
        assert store.has(ref.digest)  # durable and in place before it is handed out
    assert len(seen) == 3
    assert len(syncs) == 4  # two batches (8+8 bytes, then 8): two syncs each


def test_put_many_without_syncfs_fsyncs_each(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.local, "_syncfs", lambda: None)
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    refs = list(store.put_many(_files(tmp_path, [b"p", b"q"])))
    assert [store.read_bytes(r.digest) for r in refs] == [b"p", b"q"]
    assert len(synced) >= 2 + 1  # each temp, then each touched directory


def test_live_batch_is_not_a_stray_temp(store: LocalStore, tmp_path: Path) -> None:
    paths = _files(tmp_path, [b"live"])
    batch = cas.local._Batch(store)
    try:
        batch.add(paths[0])
        assert store.fsck() == []
    finally:
        batch.close()
    # a batch whose process died (its lock gone) is reported, once
    dead = store.tmp / "put-batch-dead"
    dead.mkdir()
    (dead / "0").write_bytes(b"half")
    assert [(p.kind, p.location) for p in store.fsck()] == [("stray-temp", "tmp/put-batch-dead")]


def test_stream_larger_than_buffers_round_trips(store: LocalStore) -> None:
    data = os.urandom(cas.local.BUF * 3 + 12345)
    ref = store.put(io.BytesIO(data))
    assert ref == hash_bytes(data)
    assert store.read_bytes(ref.digest) == data
    assert store.fsck() == []


class _FailingWrites(io.RawIOBase):
    """A source that reads fine; the store's disk is what fails."""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        b[:] = b"\0" * len(b)
        return len(b)


def test_write_error_while_streaming_surfaces(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(cas.local.StoreIOError, match="No space left"):
        store.put(cast(BinaryIO, _FailingWrites()))
    assert list(store.iterate()) == []
    assert list(store.tmp.iterdir()) == []


def test_fsck_hashes_large_objects_through_windows(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.local, "BIG", 1 << 16)
    monkeypatch.setattr(cas.local, "WINDOW", 1 << 16)
    good = store.put_bytes(os.urandom(300_000))
    bad = store.put_bytes(os.urandom(200_000))
    path = store.object_path(bad.digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(150_000)
        f.write(b"!")
    os.chmod(path, 0o444)
    problems = store.fsck()
    assert [(p.kind, p.digest) for p in problems] == [("mismatch", str(bad.digest))]
    assert store.has(good.digest)


def test_flock_on_batch_dir_is_exclusive(store: LocalStore) -> None:
    batch = cas.local._Batch(store)
    try:
        fd = os.open(batch.dir, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        batch.close()
    assert list(store.tmp.iterdir()) == []


def test_cli_put_many_goes_on_past_a_bad_input(cas: Cli, work: Path) -> None:
    (work / "a").write_bytes(b"alpha")
    (work / "b").write_bytes(b"beta")
    r = cas("put", "a", "missing", "b")
    assert r.returncode == 2
    assert r.stdout.decode() == (
        f"{hash_bytes(b'alpha').digest}  5  a\n{hash_bytes(b'beta').digest}  4  b\n"
    )
    assert r.stderr == b"cas: error: missing: no such file\n"
    ok = cas("put", "a", "-", "b", input=b"stdin")
    assert ok.returncode == 0
    assert [line.split()[0] for line in ok.stdout.decode().splitlines()] == [
        str(hash_bytes(x).digest) for x in (b"alpha", b"stdin", b"beta")
    ]


@pytest.mark.parametrize("via", ["put_file", "put_many"])
def test_large_files_are_copied_by_the_kernel_and_hashed_as_landed(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via: str
) -> None:
    monkeypatch.setattr(cas.local, "COPY_MIN", 1 << 16)
    monkeypatch.setattr(cas.local, "COPY_STEP", 100_000)  # windows off the page grid
    copied: list[int] = []
    real = os.copy_file_range

    def copy_file_range(src: int, dst: int, count: int) -> int:
        copied.append(count)
        return real(src, dst, count)

    monkeypatch.setattr(os, "copy_file_range", copy_file_range)
    data = os.urandom(cas.local.SMALL + 777_777)  # put_many reads SMALL+1 bytes first
    src = tmp_path / "big"
    src.write_bytes(data)
    if via == "put_file":
        ref = store.put_file(src)
    else:
        [ref] = list(store.put_many([src]))
    assert copied
    assert ref == hash_bytes(data)
    assert store.read_bytes(ref.digest) == data
    assert store.fsck() == []


def test_copy_falls_back_to_streaming(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.local, "COPY_MIN", 1 << 16)

    def refuse(*args: object) -> int:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    data = os.urandom(300_000)
    src = tmp_path / "big"
    src.write_bytes(data)
    ref = store.put_file(src)
    assert store.read_bytes(ref.digest) == data


def test_buffered_source_is_streamed_not_copied(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A buffered reader (stdin) may have read ahead of its fd: only raw files are copied."""
    monkeypatch.setattr(cas.local, "COPY_MIN", 1 << 16)
    data = os.urandom(cas.local.SMALL + 500_000)
    src = tmp_path / "big"
    src.write_bytes(data)
    with open(src, "rb") as f:  # buffered, like sys.stdin.buffer
        [ref] = list(store.put_many([f]))
    assert ref == hash_bytes(data)
