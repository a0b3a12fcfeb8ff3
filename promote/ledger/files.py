"""The ledger as files in the workspace, and the flock that serialises its writers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from cas import locks
from cas._crash import crashpoint
from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import ConflictError, IntegrityError
from cas.fsutil import atomic_write, fsync_dir, make_temp, makedirs_durable
from promote.canonical import canonical, load_json
from promote.errors import DiskError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Entry, Head, parse_entry
from promote.model import State

__all__ = ["LOCK_TIMEOUT", "FileLedger", "file_lock"]

LOCK_TIMEOUT = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", "30"))


@contextlib.contextmanager
def file_lock(path: Path, timeout: float | None = None, what: str = "lock") -> Iterator[None]:
    """An exclusive flock on `path`, waited for up to `timeout` seconds.

    The kernel drops the lock when its holder dies, so a killed process can never
    leave a lock that blocks the next user; the lock file itself is harmless. A link
    planted at `path` is never followed (O_NOFOLLOW): opening it with O_CREAT would
    create, or lock, whatever it points at.

    Raises:
        ConflictError: when another process holds it for longer than `timeout`.
        IntegrityError: when `path` is a symbolic link.
    """
    if timeout is None:  # read now, not at import: a long-lived caller may change it
        timeout = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", LOCK_TIMEOUT))
    try:
        makedirs_durable(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IntegrityError(
                f"{what} {path} is a symbolic link: refusing to follow it (remove it)"
            ) from None
        raise DiskError.of(f"cannot open {what} {path}", e) from None
    try:
        locks.wait(fd, fcntl.LOCK_EX, timeout, f"{what} is held by another process ({path})")
        yield
    finally:
        os.close(fd)


class FileLedger(CommitBackend):
    """The ledger as files: `entries/<seq>.json`, one canonical entry each.

    The commit point is the creation of `entries/<seq>.json` with link(2), which
    fails if the name exists: an entry file either exists whole or not at all. The
    pointer state it names was put into the store before. `HEAD` is a cache of the
    last entry, rolled forward on read, so a crash between the commit point and the
    HEAD update loses nothing.
    """

    def __init__(self, directory: Path, store: ObjectStore) -> None:
        self.dir = directory
        self.location = str(directory)
        self.entries_dir = directory / "entries"
        self._entries_str = str(self.entries_dir)  # `read` opens by str: no Path built
        self.store = store
        #: What went wrong after a commit point: the commit stands, a cache lags.
        self.warnings: list[str] = []

    def entry_path(self, seq: int) -> Path:
        return self.entries_dir / f"{seq:012d}.json"

    def _read_head_cache(self) -> Head:
        try:
            doc = load_json((self.dir / "HEAD").read_bytes(), "ledger HEAD")
            return Head(
                doc["seq"],
                Digest.parse(doc["entry"]) if doc["entry"] else None,
                ObjectRef.from_dict(doc["state"]),
            )
        except FileNotFoundError:
            return Head.genesis()
        except Exception as e:
            raise IntegrityError(f"ledger HEAD is unreadable: {e}") from None

    def head(self) -> Head:
        head = self._read_head_cache()
        if head.seq and not self.entry_path(head.seq).exists():
            raise IntegrityError(f"ledger HEAD names entry {head.seq}, which is missing")
        while self.entry_path(head.seq + 1).exists():
            head = parse_entry(self.read(head.seq + 1)).head()
        return head

    def read(self, seq: int) -> bytes:
        try:
            with open(f"{self._entries_str}/{seq:012d}.json", "rb") as f:  # entry_path
                return f.read()
        except FileNotFoundError:
            raise IntegrityError(f"ledger entry {seq} is missing") from None
        except OSError as e:
            raise DiskError.of(f"cannot read ledger entry {seq}", e) from None

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.dir / ".lock", what="the ledger lock")

    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        with self.lock():
            # read again while holding the lock: someone may have committed meanwhile
            current = self.head()
            if current != base:
                raise ConflictError(
                    f"the ledger moved: head is now entry {current.seq}"
                    f" ({current.entry}), not {base.seq}; rebuild the capsule and retry"
                )
            try:
                self._link_entry(entry)
            except OSError as e:
                raise DiskError.of(f"cannot write the ledger {self.dir}", e) from None
            # Past the commit point the entry is there, whole: what follows makes it
            # durable and updates a cache, and its failure must not unsay the commit.
            new = entry.head()
            try:
                fsync_dir(self.entries_dir)
                crashpoint("commit.after")
                atomic_write(self.dir / "HEAD", canonical(new.to_dict()))
                crashpoint("commit.head-written")
            except OSError as e:
                self.warnings.append(
                    f"committed, but the ledger is not synced: {e.strerror or e}"
                    " (run 'promote recover')"
                )
            return new

    def _link_entry(self, entry: Entry) -> None:
        """Write the entry to a temp file and link(2) it to its name: the commit point."""
        final = self.entry_path(entry.seq)
        makedirs_durable(self.entries_dir)
        fd, tmp = make_temp(self.entries_dir, ".entry-", ".tmp")
        linked = False
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(entry.data)
                f.flush()
                os.fchmod(f.fileno(), 0o444)
                os.fsync(f.fileno())
            crashpoint("commit.before")
            try:
                os.link(tmp, final)  # THE commit point
                linked = True
            except FileExistsError:
                raise ConflictError(f"ledger entry {entry.seq} already exists") from None
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                if not linked:
                    raise  # after the link, a left temp is for 'promote recover'

    def recover(self) -> list[str]:
        """Remove temp files of interrupted commits and roll HEAD forward."""
        done = []
        with self.lock():
            if self.entries_dir.is_dir():
                for p in sorted(self.entries_dir.glob(".entry-*.tmp")):
                    p.unlink()
                    done.append(f"removed interrupted entry temp {p.name}")
            head = self.head()
            if head.seq:  # the entry is the truth; HEAD only caches it
                head = parse_entry(self.read(head.seq)).head()
            if head != self._read_head_cache():
                atomic_write(self.dir / "HEAD", canonical(head.to_dict()))
                done.append(f"rewrote ledger HEAD from entry {head.seq}")
        return done
