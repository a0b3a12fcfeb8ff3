"""The hash-linked, append-only ledger and the commit backend behind it.

An entry is canonical JSON (RFC 8785). Its hash is the BLAKE3 of exactly those bytes;
each entry names the hash of the one before, so editing, dropping or reordering any
entry breaks every link after it.

The commit backend is the small interface a promotion commits through: read the
head, and `commit(base, entry, state)`, a compare-and-swap that appends the entry and
moves the pointer state in one atomic step, or raises ConflictError. `FileLedger` is
the local implementation; a PostgreSQL one fulfils the same contract.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from cas import locks
from cas._crash import crashpoint
from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import ConflictError, IntegrityError
from cas.fsutil import atomic_write, fsync_dir, makedirs_durable
from promote.canonical import canonical, load_json
from promote.errors import DiskError, InvalidDocument
from promote.model import Change, State

__all__ = [
    "ENTRY_SCHEMA",
    "GENESIS_BASE",
    "CommitBackend",
    "Entry",
    "FileLedger",
    "Head",
    "build_entry",
    "parse_entry",
]

ENTRY_SCHEMA = "promote-ledger-entry/v1"
EMPTY_STATE = State()
#: The `base` of a capsule built against the empty ledger.
GENESIS_BASE = Digest("blake3", "0" * 64)
LOCK_TIMEOUT = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", "30"))


@attrs.frozen
class Head:
    """Where the ledger ends: the last entry and the pointer state it left."""

    seq: int
    entry: Digest | None
    state: ObjectRef

    @classmethod
    def genesis(cls) -> Head:
        return cls(0, None, EMPTY_STATE.ref())

    @property
    def base(self) -> Digest:
        """What a capsule's `base` names for this head (GENESIS_BASE when empty)."""
        return self.entry or GENESIS_BASE

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry": str(self.entry) if self.entry else None,
            "state": self.state.to_dict(),
        }


@attrs.frozen
class Entry:
    """One ledger entry: its canonical bytes, its hash, and its parsed document."""

    data: bytes
    doc: Mapping[str, Any] = attrs.field(eq=False)

    @property
    def hash(self) -> Digest:
        return hash_bytes(self.data).digest

    @property
    def seq(self) -> int:
        return int(self.doc["seq"])

    @property
    def state_after(self) -> ObjectRef:
        return ObjectRef.from_dict(self.doc["state_after"])

    @property
    def changes(self) -> list[Change]:
        return [Change.from_dict(c) for c in self.doc["changes"]]

    def head(self) -> Head:
        return Head(self.seq, self.hash, self.state_after)


def build_entry(
    head: Head,
    *,
    capsule: ObjectRef,
    check_report: ObjectRef,
    decision: ObjectRef,
    policy: ObjectRef,
    state_after: ObjectRef,
    changes: list[Change],
) -> Entry:
    """The next entry after `head`. Deterministic: same inputs, same bytes."""
    doc = {
        "schema": ENTRY_SCHEMA,
        "seq": head.seq + 1,
        "prev": str(head.entry) if head.entry else None,
        "capsule": capsule.to_dict(),
        "check_report": check_report.to_dict(),
        "decision": decision.to_dict(),
        "policy": policy.to_dict(),
        "state_before": head.state.to_dict(),
        "state_after": state_after.to_dict(),
        "changes": [c.to_dict() for c in sorted(changes, key=lambda c: c.path)],
    }
    return Entry(canonical(doc), doc)


_ENTRY_KEYS = {
    "schema",
    "seq",
    "prev",
    "capsule",
    "check_report",
    "decision",
    "policy",
    "state_before",
    "state_after",
    "changes",
}


def parse_entry(data: bytes) -> Entry:
    """Parse entry bytes, checking shape and that they are exactly canonical.

    Raises:
        IntegrityError: for anything that is not a well-formed canonical entry.
    """
    try:
        doc = load_json(data, "ledger entry")
    except InvalidDocument as e:
        raise IntegrityError(str(e)) from None
    if not isinstance(doc, dict) or set(doc) != _ENTRY_KEYS or doc["schema"] != ENTRY_SCHEMA:
        raise IntegrityError("ledger entry: not a promote-ledger-entry/v1 document")
    if canonical(doc) != data:
        raise IntegrityError("ledger entry: bytes are not canonical JSON")
    try:
        for key in ("capsule", "check_report", "decision", "policy", "state_before", "state_after"):
            ObjectRef.from_dict(doc[key])
        if doc["prev"] is not None:
            Digest.parse(doc["prev"])
        if not isinstance(doc["seq"], int) or doc["seq"] < 1:
            raise ValueError("bad seq")
        for c in doc["changes"]:
            Change.from_dict(c)
    except Exception as e:
        raise IntegrityError(f"ledger entry: malformed: {e}") from None
    return Entry(data, doc)


class CommitBackend(abc.ABC):
    """Pointer state plus ledger, with compare-and-swap commits."""

    #: Human-readable location, for messages.
    location: str

    @abc.abstractmethod
    def head(self) -> Head:
        """The current head (genesis when the ledger is empty)."""

    @abc.abstractmethod
    def read(self, seq: int) -> bytes:
        """The bytes of entry `seq` (1-based). Raises IntegrityError when missing."""

    @abc.abstractmethod
    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        """Append `entry` and move to `state`, if and only if the head is still `base`.

        Raises:
            ConflictError: the head moved, or the lock could not be had in time.
        """

    def state(self, store: ObjectStore) -> State:
        """The current pointer state (read from the store, verified)."""
        return load_state(store, self.head().state)

    def entries(self, start: int = 1) -> Iterator[bytes]:
        for seq in range(start, self.head().seq + 1):
            yield self.read(seq)


def load_state(store: ObjectStore, ref: ObjectRef) -> State:
    if ref == EMPTY_STATE.ref():
        return EMPTY_STATE
    store.verify(ref)
    try:
        return State.from_dict(load_json(store.read_bytes(ref.digest), "pointer state"))
    except InvalidDocument as e:
        raise IntegrityError(f"pointer state {ref.digest}: {e}") from None


@contextlib.contextmanager
def file_lock(path: Path, timeout: float | None = None, what: str = "lock") -> Iterator[None]:
    """An exclusive flock on `path`, waited for up to `timeout` seconds.

    The kernel drops the lock when its holder dies, so a killed process can never
    leave a lock that blocks the next user; the lock file itself is harmless.

    Raises:
        ConflictError: when another process holds it for longer than `timeout`.
    """
    if timeout is None:  # read now, not at import: a long-lived caller may change it
        timeout = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", LOCK_TIMEOUT))
    try:
        makedirs_durable(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise DiskError(f"cannot open {what} {path}: {e.strerror or e}") from None
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
            return self.entry_path(seq).read_bytes()
        except FileNotFoundError:
            raise IntegrityError(f"ledger entry {seq} is missing") from None
        except OSError as e:
            raise DiskError(f"cannot read ledger entry {seq}: {e.strerror or e}") from None

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
                raise DiskError(f"cannot write the ledger: {e.strerror or e}") from None
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
        fd, tmp = tempfile.mkstemp(dir=self.entries_dir, prefix=".entry-", suffix=".tmp")
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
