"""Moving between machines: ledger export and push, store push, and checkout.

- `export_ledger`: any ledger (PostgreSQL, or another directory) written as the files
  of a local ledger, `entries/<seq 12 digits>.json` plus `HEAD`, byte for byte.
- `push_ledger`: a local ledger appended to a PostgreSQL one, in one transaction.
- `push_objects`: every object of one store copied into another, verified.
- `checkout`: the authoritative view of the ledger's state, materialized here.

Each is resumable: run again after a failure and it carries on where it stopped,
refusing (rather than overwriting) when the two sides disagree.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import ConflictError, IntegrityError, UsageError
from cas.fsutil import atomic_write, fsync_dir, makedirs_durable
from promote.canonical import canonical
from promote.errors import WorkspaceError
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Head, parse_entry
from promote.ledger.files import FileLedger
from promote.ledger.pg import PgLedger
from promote.model import State
from promote.workspace import Workspace

__all__ = [
    "Checkout",
    "PushStats",
    "checkout",
    "export_ledger",
    "push_ledger",
    "push_objects",
]


# -- the ledger ----------------------------------------------------------------


def export_ledger(source: CommitBackend, to: Path, store: ObjectStore) -> tuple[Head, int]:
    """Write `source`'s entries into the file ledger `to`; returns (head, entries written).

    Entries already in `to` must be byte-identical to the source's: an export never
    rewrites one, and refuses when they differ.

    Raises:
        IntegrityError: `to` holds entries the source does not (diverged or ahead).
    """
    out = FileLedger(to, store)
    head = source.head()
    written = 0
    with out.lock():
        have = out.head()
        if have.seq > head.seq:
            raise IntegrityError(
                f"{to} holds {have.seq} entries, the ledger {source.location} only {head.seq}"
            )
        for seq in range(1, have.seq + 1):
            if out.read(seq) != source.read(seq):
                raise IntegrityError(f"{to}: entry {seq} differs from {source.location}'s")
        makedirs_durable(out.entries_dir)
        last = have
        for data in source.entries(have.seq + 1):
            entry = parse_entry(data)
            if entry.seq != last.seq + 1 or entry.doc["prev"] != (
                str(last.entry) if last.entry else None
            ):
                raise IntegrityError(f"ledger entry {entry.seq} does not follow entry {last.seq}")
            _write_new(out.entry_path(entry.seq), data)
            last = entry.head()
            written += 1
            if last.seq == head.seq:
                break
        if written:
            fsync_dir(out.entries_dir)
        if last != head:
            raise IntegrityError(f"the ledger's head is {head}, its entries end at {last}")
        atomic_write(to / "HEAD", canonical(head.to_dict()))
    return head, written


def _write_new(path: Path, data: bytes) -> None:
    """Create `path` with `data`, read-only, whole or not at all; never overwrite."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o444)
            os.fsync(f.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def push_ledger(local: FileLedger, remote: PgLedger, store: ObjectStore) -> tuple[Head, Head]:
    """Append the entries `remote` lacks from `local`, in one transaction.

    The local ledger is verified first (chain, replay, every referenced object in
    `store`) and locked against local promotions while it is pushed. The remote must
    be empty or hold a prefix of the local ledger.

    Returns:
        The remote head before and after.

    Raises:
        IntegrityError: the local ledger has problems. ConflictError: the remote holds
        entries the local ledger does not.
    """
    from promote.verify import verify_ledger

    with local.lock():
        problems, state, _ = verify_ledger(local, store)
        if problems or state is None:
            n = len(problems)
            raise IntegrityError(
                f"the local ledger {local.location} has {n} problem{'' if n == 1 else 's'};"
                " 'promote ledger verify' lists them"
            )
        mine = local.head()
        theirs = remote.head()
        if theirs.seq > mine.seq:
            raise ConflictError(
                f"{remote.location} holds {theirs.seq} entries, the local ledger only"
                f" {mine.seq}: it is not a copy of this ledger"
            )
        if theirs.seq and parse_entry(local.read(theirs.seq)).hash != theirs.entry:
            raise ConflictError(
                f"{remote.location} diverges from the local ledger at entry {theirs.seq}"
            )
        entries = [parse_entry(local.read(s)) for s in range(theirs.seq + 1, mine.seq + 1)]
        after = remote.append(theirs, entries, state)
    return theirs, after


# -- the store -----------------------------------------------------------------


@attrs.frozen
class PushStats:
    copied: int
    present: int
    bytes: int


class _ChunkReader(io.RawIOBase):
    """A read-only file over an iterator of chunks (verified ones, from `store.open`)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it: Iterator[bytes] = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buf:
            try:
                self._buf = next(self._it)
            except StopIteration:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def _copy_one(src: ObjectStore, dest: ObjectStore, digest: Digest, verify: bool) -> int:
    """Copy one object; returns its size, or -1 when `dest` had it already."""
    size = src.size(digest)
    if dest.has(digest) and dest.size(digest) == size:
        return -1
    # src.open re-hashes while streaming and raises before the last chunk when the
    # bytes are not the digest's, so dest never names a corrupt object; dest.put
    # hashes again what it received.
    ref = dest.put(io.BufferedReader(_ChunkReader(src.open(digest))))
    if ref != ObjectRef(digest, size):
        raise IntegrityError(f"object {digest}: {dest.location} stored {ref.digest}")
    if verify:
        dest.verify(ref)
    return size


def push_objects(
    src: ObjectStore, dest: ObjectStore, jobs: int = 4, verify: bool = True
) -> PushStats:
    """Copy every object of `src` that `dest` lacks; with `verify`, re-read each copy.

    Raises:
        IntegrityError: an object of `src` is corrupt, or `dest` stored other bytes.
    """
    if src.location == dest.location:
        raise UsageError(f"{dest.location} is the workspace's own store")
    copied = present = total = 0
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(_copy_one, src, dest, d, verify) for d in src.iterate()]
        for f in futures:
            n = f.result()
            if n < 0:
                present += 1
            else:
                copied += 1
                total += n
    return PushStats(copied, present, total)


# -- checkout ------------------------------------------------------------------


@attrs.frozen
class Checkout:
    head: Head
    root: Path
    paths: int
    mode: str


def _read_state(ws: Workspace, ledger: CommitBackend) -> tuple[Head, State]:
    """The head and its state, consistently (a promotion may land in between)."""
    if isinstance(ledger, PgLedger):
        head, state = ledger.snapshot()
        # the state object in the store (re-hashed) must agree with the rows
        if load_state(ws.store, head.state) != state:
            raise IntegrityError(f"pointer state {head.state.digest}: differs from the rows")
        return head, state
    for _ in range(5):
        head = ledger.head()
        state = ledger.state(ws.store)
        if state.ref() == head.state:
            return head, state
    raise ConflictError("the ledger kept moving while its state was read; retry")


def target_workspace(ws: Workspace, to: Path | None, mode: str | None) -> Workspace:
    """The workspace whose view `checkout` writes: `ws` itself, or one rooted at `to`.

    A view at `to` keeps its own `.promote/` (generations, record, lock) in `to`, reads
    the objects from the workspace's store and has the workspace's allow-list.
    """
    from cas.local import LocalStore

    if to is None:
        if mode is not None and mode != ws.view_mode:
            raise UsageError(
                f"the workspace's view is in {ws.view_mode} mode (its config says so);"
                " --mode applies with --to"
            )
        return ws
    local = isinstance(ws.store, LocalStore)
    mode = mode or (ws.view_mode if local else "copy")
    if mode == "symlink" and not local:
        raise UsageError("symlink views need a local store; use --mode copy")
    to = to.resolve()
    if to == ws.root:
        raise UsageError(f"{to} is the workspace itself: leave out --to")
    makedirs_durable(to)
    config = {**ws.config, "store": ws.store.location, "view": {"mode": mode, "root": "."}}
    return Workspace(to, config)


def checkout(
    ws: Workspace, ledger: CommitBackend, to: Path | None = None, mode: str | None = None
) -> Checkout:
    """Materialize the ledger's current state as a view, verifying every object.

    Symlink mode re-hashes every object in the store, then switches with one rename.
    Copy mode writes each file from a verified stream, renamed into place only once
    verified. Either way the finished view is then checked against the state (copy
    mode re-hashes every file), so a checkout that returns is exact.

    Raises:
        IntegrityError: an object is missing or corrupt, or the view came out wrong.
    """
    from promote.view import View

    target = target_workspace(ws, to, mode)
    store = target.store
    view = View(target)
    for _ in range(5):
        head, state = _read_state(ws, ledger)
        if target.view_mode == "symlink":  # copy mode verifies each file as it copies
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                list(pool.map(store.verify, state.pointers.values()))
        try:
            # re-reads the head under the view lock: a concurrent checkout or promotion
            # can never leave the view at an older state
            shown = view.sync(ledger)
        except OSError as e:
            raise WorkspaceError(f"{target.view_root}: cannot write the view: {e}") from None
        if shown == head:
            break
    else:
        raise ConflictError("the ledger kept moving during the checkout; retry")
    problems = view.problems(state, head.state)
    if problems:
        p, n = problems[0], len(problems)
        raise IntegrityError(
            f"the view at {target.view_root} differs from the ledger after checkout:"
            f" {p.kind} {p.location}: {p.detail} ({n} problem{'' if n == 1 else 's'})"
        )
    return Checkout(head, target.view_root, len(state.pointers), target.view_mode)
