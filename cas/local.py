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

`put_many` does the same for many inputs with two syncs per batch instead of two per
object: its temps live in one locked directory `tmp/put-batch-*`, which a crash leaves
behind as one stray temp.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import mmap
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from cas._crash import crashpoint
from cas._workers import default_jobs, fork_map
from cas.backend import CHUNK, ObjectStore, Problem
from cas.digest import ALGORITHM, Digest, ObjectRef, hash_bytes, hasher
from cas.errors import (
    EXIT_USAGE,
    CasError,
    IntegrityError,
    InvalidDigest,
    ObjectMissing,
    StoreNotFound,
    UsageError,
)
from cas.fsutil import (
    atomic_write,
    fsync_dir,
    make_temp,
    make_temp_dir,
    makedirs_durable,
    open_source,
)
from cas.locks import hold

__all__ = ["LocalStore"]

MARKER = "cas-store.json"
MARKER_DATA = b'{"schema":"cas-store/v1"}\n'
READ_ONLY = 0o444

#: The copy buffer: small enough to stay in the CPU cache between read, hash and write.
BUF = CHUNK
#: A put lets the kernel copy regular files from this size up, this much a call.
COPY_MIN = 8 << 20
COPY_STEP = 8 << 20
#: What copy_file_range fails with where it cannot serve (then a put streams).
_NO_COPY = frozenset({errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF})
#: A put asks the kernel to start writing back every this many bytes it has written.
KICK = 32 << 20
#: `put_many` reads inputs up to this size whole and hashes them before writing.
SMALL = 1 << 20
#: `put_many` stages this many paths or more in worker processes.
PARALLEL_MIN = 64
#: `put_many` commits a batch once it holds this many bytes of new objects.
BATCH_BYTES = 256 << 20
#: fsck maps objects from this size up instead of reading them (as b3sum does);
#: from `BIG` up it hashes them with every core; it maps `WINDOW` bytes at a time.
MAP_MIN = 16 << 10
BIG = 16 << 20
WINDOW = 32 << 20
#: An object's name: the hex of its digest (what `Digest` accepts for blake3).
_OBJECT_NAME = re.compile("[0-9a-f]{64}")

#: An object fsck leaves to the caller: its path under the root, its hex name, its lstat.
_Big = tuple[str, str, os.stat_result]


class StoreIOError(CasError):
    """The store's disk refused a read or write (full, failing, read-only)."""


def _io_error(what: str, e: OSError) -> StoreIOError:
    """The disk's refusal as one line; a missing path or a permission is exit 2."""
    err = StoreIOError(f"{what}: {e.strerror or e}")
    if isinstance(e, (FileNotFoundError, PermissionError)):
        err.exit_code = EXIT_USAGE
    return err


def _freshen(path: str) -> None:
    """Set an object's mtime to now (best effort: another user's object may refuse)."""
    try:
        os.utime(path)
    except OSError:
        pass


def _try_lock(path: Path) -> bool:
    """Whether we could take the lock on `path`, i.e. nobody alive holds it.

    Opened with O_NOFOLLOW | O_NONBLOCK: a link planted in `tmp/` is never followed
    and a FIFO never blocks the open. Only a regular file or a directory (what a put
    leaves) can be a temp; anything else is False, and `odd_temps` reports it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return False
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _read_into(source: BinaryIO, buf: bytearray | memoryview) -> int:
    try:
        n = source.readinto(buf)  # type: ignore[attr-defined]
    except OSError as e:
        raise UsageError(f"cannot read the source: {e.strerror or e}") from None
    return int(n or 0)


def _read_upto(source: BinaryIO, limit: int, hint: int) -> bytes:
    """Read `source` to its end or to `limit` bytes, asking first for `hint` bytes."""
    parts = []
    got = 0
    want = max(1, min(hint, limit))
    while got < limit:
        try:
            chunk = source.read(want)
        except OSError as e:
            raise UsageError(f"cannot read the source: {e.strerror or e}") from None
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
        want = min(BUF, limit - got)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise _io_error("cannot write to the store", e) from None


def _sync_file(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as e:
        raise _io_error("cannot sync the store", e) from None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back now, without waiting for it.

    On Linux, POSIX_FADV_DONTNEED starts the writeback of the range's dirty pages (it
    drops only pages that are clean by then, so what was just written stays cached).
    The fsync at the end then finds little left to write: the disk works while the
    copy goes on, where `dd conv=fsync` copies first and waits for the disk after.
    Only a hint: durability still comes from that fsync.
    """
    if sys.platform == "linux":
        try:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def _stream_hashing(
    source: BinaryIO, fd: int, h: Any, size: int, tick: Callable[[int], None] | None = None
) -> int:
    """Read, hash and write `source` to its end, one buffer at a time; the new size."""
    buf = bytearray(BUF)
    view = memoryview(buf)
    kicked = size
    while n := _read_into(source, buf):
        chunk = view[:n]
        h.update(chunk)
        _write_all(fd, chunk)
        size += n
        if size - kicked >= KICK:
            _start_writeback(fd, kicked, size - kicked)
            kicked = size
            if tick is not None:
                tick(size)
    if tick is not None:
        tick(size)
    return size


def _copy_hashing(
    source: BinaryIO, fd: int, h: Any, size: int, tick: Callable[[int], None] | None = None
) -> int | None:
    """Have the kernel copy the rest of a large regular file to `fd` (which holds `size`
    bytes) and hash what lands there; the new size, or None where this cannot be done
    (not a regular file, too small to be worth it, another file system, no syscall),
    in which case nothing was copied.
    """
    if sys.platform != "linux" or not isinstance(source, io.FileIO):
        return None  # a buffered reader may hold bytes read ahead of its file's offset
    try:
        src = source.fileno()
        st = os.fstat(src)
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_size - size < COPY_MIN:
        return None
    start = kicked = size
    while True:
        try:
            n = os.copy_file_range(src, fd, COPY_STEP)
        except OSError as e:
            if size == start and e.errno in _NO_COPY:
                return None
            raise _io_error("cannot copy into the store", e) from None
        if not n:
            return size
        _hash_range(fd, h, size, n)
        size += n
        if tick is not None:
            tick(size)
        if size - kicked >= KICK:
            _start_writeback(fd, kicked, size - kicked)
            kicked = size


def _regular_size(source: BinaryIO) -> int | None:
    """The bytes left to read in `source`, if it is a regular file."""
    try:
        fd = source.fileno()
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            return max(st.st_size - os.lseek(fd, 0, os.SEEK_CUR), 0)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    return None


def _hash_range(fd: int, h: Any, offset: int, length: int) -> None:
    """Hash `length` bytes of `fd` from `offset`, through a read-only map (no copy)."""
    skip = offset % mmap.ALLOCATIONGRANULARITY
    try:
        m = mmap.mmap(fd, skip + length, offset=offset - skip, access=mmap.ACCESS_READ)
        with m, memoryview(m) as view, view[skip:] as part:
            h.update(part)
    except OSError as e:
        raise _io_error("cannot read back from the store", e) from None


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    """syncfs(2), which syncs one file system, where libc has it (Linux); else None.

    The callable returns 0 or an errno. Since Linux 5.8 it reports any writeback
    error on the file system since its argument was opened.
    """
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]

    def call(fd: int) -> int:
        return int(ctypes.get_errno()) if fn(fd) != 0 else 0

    return call


def _big_hasher() -> Any:
    """A BLAKE3 hasher that spreads one large input over every core."""
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


class LocalStore(ObjectStore):
    """A content-addressed store in a local directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self.objects = self.root / "objects" / ALGORITHM
        self._objects_str = str(self.objects)
        self.tmp = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        #: How many objects the last `fsck` looked at.
        self.checked: int | None = None

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
            st = os.lstat(self._object_str(digest.hex))  # a str: no Path built
        except FileNotFoundError:
            raise ObjectMissing(digest) from None
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"object {digest} is not a regular file")
        return st.st_size

    def creating(self) -> contextlib.AbstractContextManager[None]:
        """The temp lock, shared: held while a writer creates and locks its temp."""
        return hold(self.tmp, shared=True, what="the store's temp lock")

    def collecting(self, shared: bool = True) -> contextlib.AbstractContextManager[None]:
        """The collect lock: shared by writers about to name an object, exclusive by gc."""
        return hold(self.objects, shared=shared, what="the store's collect lock")

    def put(
        self, source: BinaryIO, progress: Callable[[int, int], None] | None = None
    ) -> ObjectRef:
        """See `ObjectStore.put`. A regular file is hashed first (up to `SMALL` bytes
        read whole, from `COPY_MIN` up through a map): if the store holds it already,
        nothing is written and nothing synced. `progress(done, total)` counts bytes
        read (the hash, then the copy of new bytes).
        """
        ref, hashed = self._stored_already(source, progress)
        if ref is not None:
            return ref
        head = b""
        size = _regular_size(source) if not hashed else None
        if size is not None and size <= SMALL:
            head = _read_upto(source, SMALL + 1, size + 1)
            if len(head) <= SMALL:  # the whole file: its end was read
                ref = hash_bytes(head)
                with self.collecting():
                    if self._present(ref):
                        if progress is not None:
                            progress(ref.size, ref.size)
                        return ref
        try:
            with self.creating():  # so fsck never sees the temp before it is locked
                fd, tmp = make_temp(self.tmp, "put-")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except FileNotFoundError:
            raise StoreNotFound(f"{self.root}: no cas store here") from None
        except OSError as e:
            raise _io_error("cannot create a temp file in the store", e) from None
        try:
            tick = None
            if progress is not None:
                total = hashed + len(head) + (_regular_size(source) or 0)

                def tick(done: int) -> None:
                    progress(hashed + done, max(total, hashed + done))

            ref = self._ingest(fd, source, head, tick=tick)
            _sync_file(fd)
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

    def _stored_already(
        self, source: BinaryIO, progress: Callable[[int, int], None] | None = None
    ) -> tuple[ObjectRef | None, int]:
        """For a regular file from `COPY_MIN` up: its ref if the store holds it already
        (hashed through a map, on every core; nothing written), and the bytes hashed.
        Else (None, 0).
        """
        if sys.platform != "linux" or not isinstance(source, io.FileIO):
            return None, 0
        try:
            fd = source.fileno()
            st = os.fstat(fd)
            offset = os.lseek(fd, 0, os.SEEK_CUR)
        except (OSError, ValueError):
            return None, 0
        size = st.st_size - offset
        if not stat.S_ISREG(st.st_mode) or size < COPY_MIN or offset:
            return None, 0
        h = _big_hasher()
        try:
            for start in range(0, size, COPY_STEP):
                _hash_range(fd, h, start, min(COPY_STEP, size - start))
                if progress is not None:
                    progress(start + min(COPY_STEP, size - start), 2 * size)
        except StoreIOError:
            return None, 0  # not mappable: the copy finds out
        ref = ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)
        with self.collecting():
            if self._present(ref):
                if progress is not None:
                    progress(2 * size, 2 * size)
                return ref, size
        return None, size

    def put_many(
        self,
        sources: Iterable[str | os.PathLike[str] | BinaryIO],
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, CasError], None] | None = None,
        jobs: int | None = None,
    ) -> Iterator[ObjectRef]:
        """Ingest many sources (paths, as `put_file`, or streams, as `put`), in order.

        The same guarantee as `put`, for a fraction of the syncs: each reference is
        yielded only once its object is durable. The bytes of new objects go to temp
        files in one locked batch directory; then the file system is synced once, the
        temps are renamed into place, and it is synced once more (as git's
        `core.fsyncMethod=batch`), instead of two syncs per object. Objects up to
        `SMALL` bytes are read whole and hashed first, so one already stored costs no
        write, and larger regular files are hashed first for the same reason. A batch is
        committed every `BATCH_BYTES` of new data, so that large inputs still report as
        they go. `progress(n)` is told the size of each source once it is staged.

        From `PARALLEL_MIN` paths up, `jobs` worker processes (default: every core) read,
        hash and stage them, a chunk each, into the same batch directory; the batch is
        still committed here, in input order.

        With `on_error`, a source that fails (missing, a directory, unreadable) is
        passed to it with its index, and the others are still ingested.

        Raises:
            UsageError: without `on_error`, for a source that is missing, a directory
                or unreadable, after every source before it has been committed and yielded.
        """
        jobs = jobs or default_jobs()
        sources = list(sources)
        batch = _Batch(self)
        try:
            if (
                jobs > 1
                and len(sources) >= PARALLEL_MIN
                and all(isinstance(s, (str, os.PathLike)) for s in sources)
            ):
                yield from self._put_parallel(batch, sources, progress, on_error, jobs)
                return
            for i, source in enumerate(sources):
                staged = len(batch.staged)
                try:
                    batch.add(source)
                except CasError as e:
                    if on_error is None:
                        yield from batch.commit()
                        raise
                    on_error(i, e)
                    continue
                if progress is not None:
                    progress(sum(ref.size for _, ref in batch.staged[staged:]))
                if batch.new_bytes >= BATCH_BYTES:
                    yield from batch.commit()
            yield from batch.commit()
        finally:
            batch.close()

    def _put_parallel(
        self,
        batch: _Batch,
        paths: list[Any],
        progress: Callable[[int], None] | None,
        on_error: Callable[[int, CasError], None] | None,
        jobs: int,
    ) -> Iterator[ObjectRef]:
        """`put_many`'s staging in `jobs` worker processes, a chunk of paths each, into
        the same batch directory; committed here, in input order, as in one process."""
        step = max(1, min(64, len(paths) // (4 * jobs)))
        chunks = [list(range(i, min(i + step, len(paths)))) for i in range(0, len(paths), step)]

        def stage(chunk: list[int]) -> list[tuple[str | None, str, int] | CasError]:
            stager = _Batch.stager(self, batch.dir, f"{chunk[0]}-")
            out: list[tuple[str | None, str, int] | CasError] = []
            for i in chunk:
                try:
                    stager.add(paths[i])
                except CasError as e:
                    out.append(_transferable(e))
                    continue
                temp, ref = stager.staged.pop()
                out.append((temp, ref.digest.hex, ref.size))
            return out

        results = fork_map(stage, chunks, jobs)
        try:
            ready: dict[int, list[tuple[str | None, str, int] | CasError]] = {}
            for n in range(len(chunks)):
                while n not in ready:
                    k, got = next(results)
                    ready[k] = got
                for i, outcome in zip(chunks[n], ready.pop(n), strict=True):
                    if isinstance(outcome, CasError):
                        if on_error is None:
                            yield from batch.commit()
                            raise outcome
                        on_error(i, outcome)
                        continue
                    temp, hexdigest, size = outcome
                    batch.staged.append((temp, ObjectRef(Digest(ALGORITHM, hexdigest), size)))
                    if temp is not None:
                        batch.new_bytes += size
                    if progress is not None:
                        progress(size)
                    if batch.new_bytes >= BATCH_BYTES:
                        yield from batch.commit()
            yield from batch.commit()
        finally:
            results.close()  # no worker is left writing temps when the batch is closed

    def _present(self, ref: ObjectRef) -> bool:
        """Whether an object of that name and size is in place already (dedup).

        If so, its mtime is refreshed: gc's grace period then protects it as new.
        """
        path = self._object_str(ref.digest.hex)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISREG(st.st_mode) and st.st_size == ref.size:
            _freshen(path)
            return True
        return False

    def _object_str(self, hexdigest: str) -> str:
        return f"{self._objects_str}/{hexdigest[:2]}/{hexdigest[2:]}"

    def _ingest(
        self,
        fd: int,
        source: BinaryIO,
        head: bytes = b"",
        tick: Callable[[int], None] | None = None,
    ) -> ObjectRef:
        """Copy `source` to `fd` and hash the same bytes in the same pass; the caller syncs.

        `head`, if given, is what was already read from `source`. A large regular file
        is copied by the kernel (copy_file_range: the bytes never pass through this
        process), and what landed in the temp file is hashed through a memory map, so
        the object is named by the bytes it holds. Anything else streams through one
        buffer: read, hash, write. Either way the kernel is asked to start writing back
        every `KICK` bytes, so that the final fsync finds little left to do.
        """
        h = hasher()
        h.update(head)
        _write_all(fd, head)
        size = _copy_hashing(source, fd, h, len(head), tick)
        if size is None:
            size = _stream_hashing(source, fd, h, len(head), tick)
        try:
            os.fchmod(fd, READ_ONLY)
        except OSError as e:
            raise _io_error("cannot write to the store", e) from None
        return ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)

    def _place(self, tmp: Path, ref: ObjectRef) -> None:
        final = self.object_path(ref.digest)
        try:
            with self.collecting():  # gc cannot remove it between our look and our answer
                if self._present(ref):
                    return  # already present: dedup
                makedirs_durable(final.parent)
                os.replace(tmp, final)
                fsync_dir(final.parent)
        except OSError as e:
            raise _io_error(f"cannot store object {ref.digest}", e) from None

    def raw_chunks(self, digest: Digest) -> Iterator[bytes]:
        path = self._object_str(digest.hex)  # a str: no Path built
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

    def odd_temps(self) -> list[Path]:
        """Entries of `tmp/` that no put makes: links, FIFOs, sockets, devices."""
        try:
            names = sorted(os.listdir(self.tmp))
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            try:
                mode = os.lstat(self.tmp / n).st_mode
            except FileNotFoundError:
                continue
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                out.append(self.tmp / n)
        return out

    def stray_temps(self) -> list[Path]:
        """Temp files whose writer is gone (nobody holds their lock)."""
        try:
            with hold(self.tmp, what="the store's temp lock"):  # no temp is half-created
                names = sorted(os.listdir(self.tmp))
                return [self.tmp / n for n in names if _try_lock(self.tmp / n)]
        except FileNotFoundError:
            return []

    def fsck(
        self,
        quarantine: bool = False,
        progress: Callable[[int, int], None] | None = None,
        jobs: int | None = None,
    ) -> list[Problem]:
        """See `ObjectStore.fsck`; `progress(done, total)` counts bytes re-hashed.

        The objects are checked in chunks by `jobs` worker processes (default: every
        core). Objects from `BIG` up are hashed here, as the workers find them, with
        every core, a window at a time (so that progress moves during a large one).
        `checked` is then the number of objects (validly named files) looked at.
        """
        problems: list[Problem] = []
        for path in self.stray_temps():
            problems.append(
                Problem("stray-temp", self._rel(path), "temp file of an interrupted put")
            )
        for path in self.odd_temps():
            problems.append(
                Problem("not-regular", self._rel(path), "not a file a put leaves; remove it")
            )
        problems.extend(self._layout_problems())
        candidates = []
        for fan, name in self._object_files():
            rel = f"objects/{ALGORITHM}/{fan}/{name}"
            if not _OBJECT_NAME.fullmatch(fan + name):  # the rule of Digest, without objects
                problems.append(Problem("misplaced", rel, "not a valid object name"))
                continue
            candidates.append((rel, fan + name))
        self.checked = len(candidates)
        total = 0
        if progress is not None:  # the total up front, so that the bar is honest
            for rel, _ in candidates:
                try:
                    total += os.lstat(f"{self.location}/{rel}").st_size
                except OSError:
                    pass
        jobs = jobs or default_jobs()
        step = max(1, min(256, -(-len(candidates) // (4 * jobs))))
        chunks = [candidates[i : i + step] for i in range(0, len(candidates), step)]
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(min(done, total), total)

        for _, (found, hashed, big) in fork_map(self._check_chunk, chunks, jobs):
            problems.extend(found)
            tick(hashed)
            for item in sorted(big, key=lambda i: -i[2].st_size):
                problems.extend(self._check_object(*item, tick=tick))
        if progress is not None:
            progress(total, total)
        problems.sort()
        if quarantine:
            self._set_aside(problems)
        return problems

    def _check_chunk(self, chunk: list[tuple[str, str]]) -> tuple[list[Problem], int, list[_Big]]:
        """Check a chunk of objects (lstat, mode, bytes): the problems, the bytes hashed,
        and the objects from `BIG` up, left for the caller to hash on every core."""
        problems: list[Problem] = []
        hashed = 0
        big: list[_Big] = []
        for rel, hexdigest in chunk:
            try:
                st: os.stat_result | OSError | None = os.lstat(f"{self.location}/{rel}")
            except FileNotFoundError:
                continue  # deleted by gc while we looked
            except OSError as e:
                st = e
            if isinstance(st, os.stat_result) and st.st_size >= BIG and stat.S_ISREG(st.st_mode):
                big.append((rel, hexdigest, st))
                continue
            problems.extend(self._check_object(rel, hexdigest, st))
            if isinstance(st, os.stat_result):
                hashed += st.st_size
        return problems, hashed, big

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

    def _check_object(
        self,
        rel: str,
        hexdigest: str,
        st: os.stat_result | OSError | None,
        tick: Callable[[int], None] | None = None,
    ) -> list[Problem]:
        digest = f"{ALGORITHM}:{hexdigest}"
        if st is None:
            return []
        if isinstance(st, OSError):
            return [Problem("unreadable", rel, st.strerror or str(st), digest)]
        if not stat.S_ISREG(st.st_mode):
            return [Problem("not-regular", rel, "not a regular file", digest)]
        problems = []
        if st.st_mode & 0o222:
            problems.append(
                Problem("permissions", rel, f"mode {stat.S_IMODE(st.st_mode):o}, want 444", digest)
            )
        try:
            got, size = _hash_file(f"{self.location}/{rel}", tick)
        except OSError as e:
            return [*problems, Problem("unreadable", rel, e.strerror or str(e), digest)]
        if got != hexdigest:
            other = Digest(ALGORITHM, got)
            if (self.object_path(other)).is_file():
                detail = f"holds the bytes of {other} ({size} bytes), another object"
            else:
                detail = f"bytes hash to {other} ({size} bytes)"
            problems.append(Problem("mismatch", rel, detail, digest))
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


_buffers = threading.local()


def _hash_file(path: str, tick: Callable[[int], None] | None = None) -> tuple[str, int]:
    """The hex digest and size of a file's bytes, without following a symlink.

    As b3sum does, files from `MAP_MIN` up are hashed through read-only memory maps
    (no copy), a window at a time, so that memory stays bounded; from `BIG` up, on
    every core. Smaller ones are read into a buffer kept per thread. The maps assume
    what fsck assumes of objects: nobody truncates one meanwhile.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        if size >= MAP_MIN:
            h = _big_hasher() if size >= BIG else hasher()
            for offset in range(0, size, WINDOW):
                with mmap.mmap(
                    fd, min(WINDOW, size - offset), offset=offset, access=mmap.ACCESS_READ
                ) as window:
                    h.update(window)
                if tick is not None:
                    tick(min(WINDOW, size - offset))
        else:
            h = hasher()
            buf = getattr(_buffers, "buf", None)
            if buf is None:
                buf = _buffers.buf = bytearray(BUF)
            view = memoryview(buf)
            size = 0
            while n := os.readv(fd, [buf]):
                h.update(view[:n])
                size += n
            if tick is not None:
                tick(size)
    finally:
        os.close(fd)
    return str(h.hexdigest()), size


def _transferable(e: CasError) -> CasError:
    """`e`, or (where it would not survive pickling) a CasError of its message and code."""
    import pickle

    try:
        back = pickle.loads(pickle.dumps(e))
    except Exception:  # any failure: fall back to the message
        back = None
    if type(back) is type(e) and str(back) == str(e):
        return e
    plain = CasError(str(e))
    plain.exit_code = e.exit_code
    return plain


class _Batch:
    """New objects of a `put_many`, staged in one locked directory, made durable together."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        try:
            with store.creating():
                self.dir = make_temp_dir(store.tmp, "put-batch-")
                # Held until close: fsck and gc tell a live batch from a stray one by it.
                self.fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
                fcntl.flock(self.fd, fcntl.LOCK_EX)
        except FileNotFoundError:
            raise StoreNotFound(f"{store.root}: no cas store here") from None
        except OSError as e:
            raise _io_error("cannot create a temp directory in the store", e) from None
        self.staged: list[tuple[str | None, ObjectRef]] = []  # (temp, ref); None: stored
        self.new_bytes = 0
        self.seq = 0
        self.prefix = ""

    @classmethod
    def stager(cls, store: LocalStore, directory: str, prefix: str) -> _Batch:
        """A batch's stand-in in a worker process: it stages into `directory` (which
        the batch holds locked) under names that start with `prefix`; never commits."""
        self = cls.__new__(cls)
        self.store = store
        self.dir = directory
        self.fd = -1
        self.staged = []
        self.new_bytes = 0
        self.seq = 0
        self.prefix = prefix
        return self

    def add(self, source: str | os.PathLike[str] | BinaryIO) -> None:
        if not isinstance(source, (str, os.PathLike)):
            self._add(source, _read_upto(source, SMALL + 1, BUF))
            return
        fd, st = open_source(source)
        try:
            if stat.S_ISREG(st.st_mode) and st.st_size <= SMALL:
                # One read: for a regular file, a short read is its end.
                try:
                    head = os.read(fd, st.st_size + 1)
                except OSError as e:
                    raise UsageError(f"cannot read the source: {e.strerror or e}") from None
                if len(head) <= st.st_size:
                    self._add(None, head)
                    return
            with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
                assert isinstance(f, io.FileIO)
                stored, _ = self.store._stored_already(f)
                if stored is not None:  # a large file the store holds: nothing to write
                    self.staged.append((None, stored))
                    return
                self._add(f, _read_upto(f, SMALL + 1, st.st_size + 1))
        finally:
            os.close(fd)

    def _add(self, source: BinaryIO | None, head: bytes) -> None:
        """Stage one input, of which `head` was read; `source` has the rest, if any."""
        whole = len(head) <= SMALL
        if whole:
            ref = hash_bytes(head)
            if self.store._present(ref):
                self.staged.append((None, ref))
                return
        temp = f"{self.dir}/{self.prefix}{self.seq}"
        self.seq += 1
        try:
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)  # read: see _ingest
        except OSError as e:
            raise _io_error("cannot create a temp file in the store", e) from None
        try:
            try:
                if whole:
                    _write_all(fd, head)
                    try:
                        os.fchmod(fd, READ_ONLY)
                    except OSError as e:
                        raise _io_error("cannot write to the store", e) from None
                else:
                    assert source is not None
                    ref = self.store._ingest(fd, source, head)
            finally:
                os.close(fd)
            if not whole and self.store._present(ref):
                os.unlink(temp)
                self.staged.append((None, ref))
                return
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        self.staged.append((temp, ref))
        self.new_bytes += ref.size

    def commit(self) -> list[ObjectRef]:
        """Make every staged object durable and in place; their refs, in order."""
        temps = [t for t, _ in self.staged if t is not None]
        if temps:
            self._sync(temps)
            crashpoint("put.temp-written")
            touched: set[str] = set()
            try:
                with self.store.collecting():
                    for temp, ref in self.staged:
                        if temp is None:
                            continue
                        final = self.store._object_str(ref.digest.hex)
                        fan = os.path.dirname(final)
                        if fan not in touched:
                            os.makedirs(fan, exist_ok=True)
                            touched.add(fan)
                        if self.store._present(ref):
                            os.unlink(temp)  # put by someone else meanwhile
                        else:
                            os.replace(temp, final)
            except OSError as e:
                raise _io_error("cannot store an object", e) from None
            self._sync([*sorted(touched), str(self.store.objects)])
            crashpoint("put.renamed")
        refs = [ref for _, ref in self.staged]
        self.staged = []
        self.new_bytes = 0
        return refs

    def _sync(self, paths: list[str]) -> None:
        """Make `paths` durable: one syncfs of the store's file system, else an fsync each."""
        syncfs = _syncfs()
        try:
            if syncfs is not None:
                err = syncfs(self.fd)
                if err:
                    raise OSError(err, os.strerror(err))
                return
            for p in paths:
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as e:
            raise _io_error("cannot sync the store", e) from None

    def close(self) -> None:
        """Remove what was not committed, then the directory; release the lock."""
        for temp, _ in self.staged:
            if temp is not None:
                try:
                    os.unlink(temp)
                except FileNotFoundError:
                    pass
        self.staged = []
        try:  # what worker processes staged and nobody committed
            for name in os.listdir(self.dir):
                os.unlink(f"{self.dir}/{name}")
        except OSError:
            pass
        try:
            os.rmdir(self.dir)
        except OSError:
            pass  # not empty: left for fsck to report as a stray temp
        os.close(self.fd)
