"""Local-directory specifics: layout, permissions, temp files, quarantine."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from cas.digest import Digest
from cas.local import LocalStore


def test_layout_and_mode(store: LocalStore) -> None:
    ref = store.put_bytes(b"x")
    path = store.root / "objects" / "blake3" / ref.digest.hex[:2] / ref.digest.hex[2:]
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list((store.root / "tmp").iterdir()) == []


def test_init_is_idempotent(tmp_path: Path) -> None:
    a = LocalStore.init(tmp_path / "s")
    ref = a.put_bytes(b"keep me")
    b = LocalStore.init(tmp_path / "s")
    assert b.has(ref.digest)


def test_stray_temp_reported_but_live_temp_not(store: LocalStore) -> None:
    stray = store.tmp / "put-dead"
    stray.write_bytes(b"half")
    live = store.tmp / "put-live"
    live.write_bytes(b"writing")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        problems = store.fsck()
    finally:
        os.close(fd)
    assert [(p.kind, p.location) for p in problems] == [("stray-temp", "tmp/put-dead")]


def test_fsck_finds_misplaced_swapped_and_permissions(store: LocalStore) -> None:
    a = store.put_bytes(b"object a")
    b = store.put_bytes(b"object b")
    # swap: a's name now holds b's bytes
    pa = store.object_path(a.digest)
    os.chmod(pa, 0o644)
    pa.write_bytes(b"object b")
    (store.objects / "zz").mkdir()
    (store.objects / "zz" / "junk").write_bytes(b"?")
    (store.root / "objects" / "stray").write_bytes(b"?")
    os.chmod(store.object_path(b.digest), 0o644)
    kinds = {(p.kind, p.location) for p in store.fsck()}
    assert ("mismatch", store._rel(pa)) in kinds
    assert ("permissions", store._rel(pa)) in kinds
    assert ("permissions", store._rel(store.object_path(b.digest))) in kinds
    assert ("misplaced", "objects/blake3/zz/junk") in kinds
    assert ("misplaced", "objects/stray") in kinds


def test_quarantine_moves_never_deletes(store: LocalStore) -> None:
    ref = store.put_bytes(b"precious")
    path = store.object_path(ref.digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"damaged!")
    problems = store.fsck(quarantine=True)
    assert {p.kind for p in problems} == {"mismatch", "permissions"}
    assert not path.exists()
    moved = store.quarantine_dir / store._rel(path)
    assert moved.read_bytes() == b"damaged!"
    assert store.fsck() == []
    # a good copy can be put again after quarantine
    assert store.put_bytes(b"precious") == ref


def test_symlink_in_store_is_not_followed(store: LocalStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    from cas.digest import hash_bytes

    ref = hash_bytes(b"secret")
    path = store.object_path(ref.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(outside)
    problems = store.fsck()
    assert [(p.kind, p.digest) for p in problems] == [("not-regular", str(ref.digest))]
    assert isinstance(ref.digest, Digest)
