"""The local directory backend.

Layout under the store root::

    cas-store.json                     marker: {"schema": "cas-store/v1"}
    objects/blake3/<2 hex>/<62 hex>    objects, mode 0444
    tmp/                               in-flight ingests (each flock'ed by its writer)
    quarantine/                        what `fsck --quarantine` set aside

An ingest streams into a temp file under `tmp/` while hashing, fsyncs it, renames it
to its digest name and fsyncs the directory. A crash leaves at most a temp file,
which nobody holds a lock on any more: that is how fsck and gc tell a stray temp
from a live one.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from cas._crash import crashpoint
from cas.backend import CHUNK, ObjectStore, Problem
from cas.digest import ALGORITHM, Digest, ObjectRef, hasher
from cas.errors import (
    CasError,
    IntegrityError,
    InvalidDigest,
    ObjectMissing,
    StoreNotFound,
    UsageError,
)
from cas.fsutil import atomic_write, fsync_dir, makedirs_durable

__all__ = ["LocalStore"]

MARKER = "cas-store.json"
MARKER_DATA = b'{"schema":"cas-store/v1"}\n'
READ_ONLY = 0o444


class StoreIOError(CasError):
    """The store's disk refused a read or write (full, failing, read-only)."""


def _io_error(what: str, e: OSError) -> StoreIOError:
    return StoreIOError(f"{what}: {e.strerror or e}")


def _try_lock(path: Path) -> bool:
    """Whether we could take the lock on `path`, i.e. nobody alive holds it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class LocalStore(ObjectStore):
    """A content-addressed store in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.objects = self.root / "objects" / ALGORITHM
        self.tmp = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"

    @classmethod
    def init(cls, root: Path) -> LocalStore:
        """Create a store at `root` (an existing store is left as it is)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise StoreNotFound(f"{root}: exists and is not a directory")
        store = cls(root)
        try:
            for d in (store.objects, store.tmp, store.quarantine_dir):
                makedirs_durable(d)
            if not (root / MARKER).exists():
                atomic_write(root / MARKER, MARKER_DATA)
        except OSError as e:
            raise _io_error(f"cannot create store at {root}", e) from None
        return store

    @classmethod
    def existing(cls, root: Path) -> LocalStore:
        """Open an existing store.

        Raises:
            StoreNotFound: when `root` holds no store.
        """
        root = Path(root)
        if not (root / MARKER).is_file():
            raise StoreNotFound(f"{root}: no cas store here (create one with 'cas init')")
        return cls(root)

    # -- layout --------------------------------------------------------------

    def object_path(self, digest: Digest) -> Path:
        return self.objects / digest.hex[:2] / digest.hex[2:]

    # -- primitives ----------------------------------------------------------

    def has(self, digest: Digest) -> bool:
        return self.object_path(digest).is_file()

    def size(self, digest: Digest) -> int:
        try:
            st = os.lstat(self.object_path(digest))
        except FileNotFoundError:
            raise ObjectMissing(digest) from None
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"object {digest} is not a regular file")
        return st.st_size

    def put(self, source: BinaryIO) -> ObjectRef:
        try:
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="put-")
        except FileNotFoundError:
            raise StoreNotFound(f"{self.root}: no cas store here") from None
        except OSError as e:
            raise _io_error("cannot create a temp file in the store", e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            ref = self._ingest(fd, source)
            crashpoint("put.temp-written")
            self._place(Path(tmp), ref)
            crashpoint("put.renamed")
            return ref
        finally:
            os.close(fd)
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass

    def _ingest(self, fd: int, source: BinaryIO) -> ObjectRef:
        """Copy `source` to `fd` and hash the same bytes in the same pass."""
        h = hasher()
        size = 0
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            try:
                n = source.readinto(view)  # type: ignore[attr-defined]
            except OSError as e:
                raise UsageError(f"cannot read the source: {e.strerror or e}") from None
            if not n:
                break
            chunk = view[:n]
            h.update(chunk)
            try:
                written = 0
                while written < n:
                    written += os.write(fd, chunk[written:])
            except OSError as e:
                raise _io_error("cannot write to the store", e) from None
            size += n
        try:
            os.fchmod(fd, READ_ONLY)
            os.fsync(fd)
        except OSError as e:
            raise _io_error("cannot sync the store", e) from None
        return ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)

    def _place(self, tmp: Path, ref: ObjectRef) -> None:
        final = self.object_path(ref.digest)
        try:
            st = os.lstat(final)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == ref.size:
            return  # already present: dedup
        try:
            makedirs_durable(final.parent)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        except OSError as e:
            raise _io_error(f"cannot store object {ref.digest}", e) from None

    def raw_chunks(self, digest: Digest) -> Iterator[bytes]:
        path = self.object_path(digest)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise ObjectMissing(digest) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise IntegrityError(f"object {digest} is a symlink") from None
            raise _io_error(f"cannot read object {digest}", e) from None
        return self._chunks_of(fd)

    @staticmethod
    def _chunks_of(fd: int) -> Iterator[bytes]:
        with os.fdopen(fd, "rb", buffering=0) as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def iterate(self) -> Iterator[Digest]:
        for fan, name in self._object_files():
            try:
                yield Digest(ALGORITHM, fan + name)
            except InvalidDigest:
                continue

    def _object_files(self) -> Iterator[tuple[str, str]]:
        try:
            fans = sorted(os.listdir(self.objects))
        except FileNotFoundError:
            return
        for fan in fans:
            d = self.objects / fan
            if not d.is_dir() or d.is_symlink():
                continue
            for name in sorted(os.listdir(d)):
                yield fan, name

    def delete(self, digest: Digest) -> None:
        path = self.object_path(digest)
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise ObjectMissing(digest) from None
        fsync_dir(path.parent)

    # -- fsck ----------------------------------------------------------------

    def stray_temps(self) -> list[Path]:
        """Temp files whose writer is gone (nobody holds their lock)."""
        try:
            names = sorted(os.listdir(self.tmp))
        except FileNotFoundError:
            return []
        return [self.tmp / n for n in names if _try_lock(self.tmp / n)]

    def fsck(
        self,
        quarantine: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> list[Problem]:
        problems: list[Problem] = []
        for path in self.stray_temps():
            problems.append(
                Problem("stray-temp", self._rel(path), "temp file of an interrupted put")
            )
        problems.extend(self._layout_problems())
        candidates = []
        for fan, name in self._object_files():
            path = self.objects / fan / name
            try:
                digest = Digest(ALGORITHM, fan + name)
            except InvalidDigest:
                problems.append(Problem("misplaced", self._rel(path), "not a valid object name"))
                continue
            candidates.append((path, digest))
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            for found in pool.map(self._check_object, candidates):
                problems.extend(found)
                if progress is not None:
                    progress(1)
        problems.sort()
        if quarantine:
            self._set_aside(problems)
        return problems

    def _layout_problems(self) -> list[Problem]:
        problems = []
        base = self.root / "objects"
        for dirpath, dirnames, filenames in os.walk(base):
            rel = Path(dirpath).relative_to(base).parts
            for name in sorted(filenames + [d for d in dirnames if Path(dirpath, d).is_symlink()]):
                if len(rel) == 2 and rel[0] == ALGORITHM:
                    continue  # objects themselves: checked one by one
                problems.append(
                    Problem(
                        "misplaced",
                        self._rel(Path(dirpath, name)),
                        "file outside the object layout",
                    )
                )
            if len(rel) >= 2:
                dirnames[:] = []
        return problems

    def _check_object(self, item: tuple[Path, Digest]) -> list[Problem]:
        path, digest = item
        rel = self._rel(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return []  # deleted by gc while we looked
        if not stat.S_ISREG(st.st_mode):
            return [Problem("not-regular", rel, "not a regular file", str(digest))]
        problems = []
        if st.st_mode & 0o222:
            problems.append(
                Problem(
                    "permissions", rel, f"mode {stat.S_IMODE(st.st_mode):o}, want 444", str(digest)
                )
            )
        h = hasher()
        size = 0
        try:
            with open(path, "rb", buffering=0) as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as e:
            return [*problems, Problem("unreadable", rel, e.strerror or str(e), str(digest))]
        got = Digest(ALGORITHM, h.hexdigest())
        if got != digest:
            if (self.object_path(got)).is_file():
                detail = f"holds the bytes of {got} ({size} bytes), another object"
            else:
                detail = f"bytes hash to {got} ({size} bytes)"
            problems.append(Problem("mismatch", rel, detail, str(digest)))
        return problems

    def _set_aside(self, problems: list[Problem]) -> None:
        bad = {"mismatch", "misplaced", "not-regular"}
        moved = {p.location for p in problems if p.kind in bad}
        for p in problems:
            path = self.root / p.location
            if p.kind == "permissions" and p.location not in moved:
                os.chmod(path, READ_ONLY)  # the bytes are good: only the mode was wrong
            if p.kind not in bad:
                continue
            dest = self.quarantine_dir / p.location
            n = 0
            while dest.exists() or dest.is_symlink():
                n += 1
                dest = self.quarantine_dir / f"{p.location}.{n}"
            makedirs_durable(dest.parent)
            os.replace(path, dest)
            fsync_dir(path.parent)

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()
