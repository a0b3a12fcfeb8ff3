"""Rollback protection: a trusted checkpoint that only grows (ADR 10, "Rollback").

`.promote/checkpoint.json` holds the largest (size, root) of the ledger's Merkle tree
(`promote.ledger.proofs`, the `promote ledger checkpoint --json` document) that this
workspace has seen verified. Every clean `promote verify` / `promote ledger verify`
and every promotion moves it forward, and only after checking that the ledger today
is consistent with it (an RFC 6962 consistency proof from its size to the head). A
ledger that is shorter than a checkpoint (its tail dropped, HEAD rewritten to match)
or whose first `size` entries hash to another root (a rewritten chain, however
consistent in itself) is a `rollback` problem naming the checkpoint: exit 3.

`--checkpoint FILE` pins one kept elsewhere (a CI artifact, a witness, a colleague's
copy), in the same format. The workspace's own file is only as good as the
directory it lives in: an attacker who can write `.promote/` can delete it, which is
why a copy kept outside is the real defence, and why a checkpoint file that exists but
does not parse is an error rather than a fresh start.

Next to it, `.promote/checkpoint-frontier.json` keeps what moving it forward needs
without reading the whole ledger again: the roots of the perfect subtrees of its tree
(at most 64), the hash of the checkpoint's last entry, and the spine that binds that
hash to them (its leaf's left siblings up to the last subtree's root; without it the
hash was a bare claim, and a frontier naming a forged last entry passed: ADR 15).
`advance` uses it only when it rebuilds the checkpoint's root exactly and binds the
last entry's hash; then it reads the checkpoint's last entry (which must hash to the
recorded digest: a hash chain's last entry commits to every entry before it) and the
entries after it, each linking to the one before. So a promotion checks and moves the
checkpoint reading only the entries added since, and anything else (no frontier, one
that does not match, a chain that does not link) takes the full path: the root of the
ledger's first `size` entries, compared with the checkpoint's. The frontier is a
cache, never a trust root: it is believed only as far as it reproduces the checkpoint.
`promote ledger verify --since-checkpoint` starts from the same place
(`checkpoint_entry`).

The gate checks the same before it commits (`refuse_rollback_at`, on the head its
promotion builds on, by the same two paths, writing nothing): a promotion on a ledger
that does not extend the checkpoint is refused, exit 3, and nothing is committed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import attrs
import blake3

from cas.backend import Problem
from cas.errors import CasError, IntegrityError, UsageError
from cas.fsutil import atomic_write, makedirs_durable
from promote.canonical import canonical, load_json
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import ENTRY_SCHEMAS, Head
from promote.ledger.merkle import NODE_PREFIX
from promote.ledger.proofs import (
    TREE,
    Checkpoint,
    ledger_checkpoint,
    load_checkpoint,
)

__all__ = [
    "CHECKPOINT_FILE",
    "advance",
    "checkpoint_entry",
    "check_checkpoint",
    "read_checkpoint",
    "refuse_rollback",
    "refuse_rollback_at",
    "workspace_checkpoint",
]

#: Relative to the workspace root.
CHECKPOINT_FILE = ".promote/checkpoint.json"
#: The cache that moves it forward cheaply (module docstring).
FRONTIER_FILE = ".promote/checkpoint-frontier.json"
FRONTIER_SCHEMA = "promote-checkpoint-frontier/v2"
#: A checkpoint is a hundred bytes (plus signatures); anything this big is not one.
MAX_CHECKPOINT = 1 << 20


def workspace_checkpoint(root: Path) -> Path:
    return root / CHECKPOINT_FILE


def read_checkpoint(path: Path, missing_ok: bool = False) -> Checkpoint | None:
    """The checkpoint in `path` (None when missing and `missing_ok`).

    Raises:
        UsageError (2): unreadable or missing (unless `missing_ok`), a symlink.
        InvalidDocument (2): not a checkpoint.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise UsageError(f"checkpoint {path}: no such file") from None
    except OSError as e:
        raise UsageError(f"checkpoint {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_CHECKPOINT + 1)
    if len(data) > MAX_CHECKPOINT:
        raise InvalidDocument(f"checkpoint {path}: larger than {MAX_CHECKPOINT} bytes")
    try:
        return load_checkpoint(data, f"checkpoint {path}")
    except InvalidDocument as e:
        raise InvalidDocument(f"checkpoint {path}: {e}") from None


def check_checkpoint(
    ledger: CommitBackend, cp: Checkpoint, name: str, head: Head | None = None
) -> list[Problem]:
    """Whether the ledger today (up to `head`, its head when None) extends the one `cp`
    describes. One `rollback` problem naming `name` when it does not; none when it does."""
    try:
        size = (ledger.head() if head is None else head).seq
    except IntegrityError:
        return []  # the ledger checks report a broken head
    if size < cp.size:
        return [
            Problem(
                "rollback",
                name,
                f"the ledger has {size} entries, fewer than the {cp.size} this checkpoint"
                " saw: entries were dropped (truncation or rollback)",
            )
        ]
    # The ledger today is consistent with `cp` exactly when its first `cp.size` entries
    # have `cp.root` as their Merkle root: both trees are of this ledger, so the RFC 6962
    # consistency proof from `cp.size` to `size` holds exactly then. Computing that root
    # reads `cp.size` entries once (the proof read all `size` twice).
    try:
        prefix = ledger_checkpoint(ledger, cp.size)
    except IntegrityError:
        return []  # a broken chain: the ledger checks report it
    if prefix.root != cp.root:
        return [
            Problem(
                "rollback",
                name,
                f"the ledger's first {cp.size} entries are not the ones this checkpoint saw"
                f" (the chain was rewritten): their root is {prefix.root.hex()},"
                f" not {cp.root.hex()}",
            )
        ]
    return []


def refuse_rollback(root: Path, ledger: CommitBackend) -> None:
    """Raise unless the ledger extends the workspace's checkpoint (if it has one).

    Raises:
        LinkageError (3): one line naming the checkpoint.
    """
    from promote.errors import LinkageError

    held = read_checkpoint(workspace_checkpoint(root), missing_ok=True)
    if held is not None:
        for p in check_checkpoint(ledger, held, CHECKPOINT_FILE):
            raise LinkageError(f"{p.location}: {p.detail}")


def refuse_rollback_at(root: Path, ledger: CommitBackend, head: Head) -> None:
    """Raise unless the ledger up to `head` (the head a promotion builds on) extends
    the workspace's checkpoint (if it has one). Reads only the entries after the
    checkpoint when the frontier vouches for it (module docstring), else takes the full
    consistency proof; writes nothing.

    Raises:
        LinkageError (3): one line naming the checkpoint.
        UsageError, InvalidDocument (2): the checkpoint file is unreadable or malformed.
    """
    from promote.errors import LinkageError

    held = read_checkpoint(workspace_checkpoint(root), missing_ok=True)
    if held is None or _fast_frontier(root, ledger, held, head) is not None:
        return
    for p in check_checkpoint(ledger, held, CHECKPOINT_FILE, head):
        raise LinkageError(f"{p.location}: {p.detail}")


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    from promote.ledger.files import file_lock

    with file_lock(root / ".promote/checkpoint.lock", what="the checkpoint lock"):
        yield


@attrs.frozen
class _Frontier:
    """The tree of the first `size` entries, as far as appending to it needs: the
    roots of its perfect subtrees, largest first, and the digest of entry `size`, with
    the `spine` that binds it to them: the left siblings on the path from its leaf up
    to the root of the last subtree, lowest first. Without the spine, `last` would be
    a claim the root does not check (ADR 15): a frontier naming a forged last entry
    would rebuild the checkpoint's root all the same."""

    size: int
    stack: tuple[bytes, ...]
    last: bytes | None  # blake3 of entry `size` (None for size 0)
    spine: tuple[bytes, ...] = ()

    def binds_last(self) -> bool:
        """Whether entry `size`'s leaf, folded with the spine, is the last subtree's
        root (and the spine is as long as that subtree is high)."""
        if self.last is None or not self.stack:
            return self.size == 0 and not self.stack and not self.spine
        if len(self.spine) != (self.size & -self.size).bit_length() - 1:
            return False
        node = TREE.leaf(self.last)
        for left in self.spine:
            node = TREE.node(left, node)
        return node == self.stack[-1]

    def root(self) -> bytes:
        if not self.stack:
            return TREE.empty()
        acc = self.stack[-1]
        for node in reversed(self.stack[:-1]):
            acc = TREE.node(node, acc)
        return acc

    def to_dict(self) -> dict[str, object]:
        return {
            "schema": FRONTIER_SCHEMA,
            "size": self.size,
            "stack": [h.hex() for h in self.stack],
            "last": self.last.hex() if self.last is not None else None,
            "spine": [h.hex() for h in self.spine],
        }


_EMPTY = _Frontier(0, (), None)


def _read_frontier(root: Path) -> _Frontier | None:
    """The cached frontier, or None for any file that is not one (it is only a cache)."""
    try:
        fd = os.open(root / FRONTIER_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(64 << 10)
    try:
        doc = load_json(data, "checkpoint frontier")
        if not isinstance(doc, dict) or doc.get("schema") != FRONTIER_SCHEMA:
            return None
        size, stack, last, spine = doc["size"], doc["stack"], doc["last"], doc["spine"]
        if not isinstance(size, int) or size < 1 or not isinstance(stack, list):
            return None
        if not isinstance(spine, list):
            return None
        hashes = tuple(bytes.fromhex(h) for h in stack)
        lefts = tuple(bytes.fromhex(h) for h in spine)
        if len(hashes) != size.bit_count() or any(len(h) != TREE.size for h in hashes + lefts):
            return None
        frontier = _Frontier(size, hashes, bytes.fromhex(last), lefts)
        return frontier if frontier.binds_last() else None
    except (InvalidDocument, KeyError, TypeError, ValueError):
        return None


def _extend(frontier: _Frontier, entries: Iterator[bytes], upto: int) -> _Frontier:
    """`frontier` extended by the entries after it, up to entry `upto`, each of which
    must link to the one before (the cheap link check of `promote.ledger.proofs`).

    Raises:
        IntegrityError: an entry that does not link, or the ledger ends early.
    """
    stack = list(frontier.stack)
    last, size = frontier.last, frontier.size
    h, leaf = TREE.h, TREE.leaf
    schemas = [x.encode() for x in ENTRY_SCHEMAS]
    for data in entries:
        if size == upto:
            break
        seq = size + 1
        prev = b'"blake3:%s"' % last.hex().encode() if last is not None else b"null"
        links = [b'"prev":%s,"schema":"%s","seq":%d,' % (prev, x, seq) for x in schemas]
        if not any(link in data for link in links):
            raise IntegrityError(f"ledger entry {seq} does not link to entry {seq - 1}")
        last = blake3.blake3(data).digest()
        node, i = leaf(last), seq
        spine = []
        while not i & 1:  # one merge per trailing zero bit of the new size
            spine.append(stack.pop())
            node = h(NODE_PREFIX + spine[-1] + node)
            i >>= 1
        stack.append(node)
        size = seq
    if size != upto:
        raise IntegrityError(f"the ledger yielded {size} entries, its head says {upto}")
    if size == frontier.size:
        return frontier
    return _Frontier(size, tuple(stack), last, tuple(spine))


def _fast_frontier(
    root: Path, ledger: CommitBackend, held: Checkpoint, at: Head | None = None
) -> _Frontier | None:
    """The frontier at `at` (the ledger's head when None), reading only entries
    `held.size`.. (module docstring); None when the cache cannot vouch for `held` or the
    ledger does not extend it simply: the caller then takes the full path."""
    cached = _read_frontier(root)
    if cached is None or cached.size != held.size or cached.root() != held.root:
        return None
    try:
        head = ledger.head() if at is None else at
        if head.seq < held.size:
            return None
        entries = ledger.entries(held.size)
        if blake3.blake3(next(entries)).digest() != cached.last:
            return None
        new = _extend(cached, entries, head.seq)
    except (CasError, StopIteration):
        return None
    if head.entry is None or new.last != bytes.fromhex(head.entry.hex):
        return None
    return new


def checkpoint_entry(root: Path, ledger: CommitBackend) -> tuple[int, bytes] | str:
    """Where an incremental verification may start (`promote ledger verify
    --since-checkpoint`): the workspace checkpoint's last entry, as its seq and bytes,
    when the frontier vouches for the checkpoint and the ledger extends it (the fast
    path of `advance`: the frontier rebuilds the checkpoint's root, entry `size` hashes
    to the digest it records, and every entry after it links to the one before, up to
    the head). Reads entry `size` and the entries after it, nothing before.

    Returns the line saying why not, instead, for anything else (no checkpoint, no
    frontier or one that does not reproduce it, a ledger shorter than it or forked from
    it, a chain that does not link): the caller then verifies in full, which reports a
    rollback or a fork as such.

    Raises:
        UsageError, InvalidDocument (2): the checkpoint file is unreadable or malformed.
    """
    held = read_checkpoint(workspace_checkpoint(root), missing_ok=True)
    if held is None:
        return f"no {CHECKPOINT_FILE}"
    cached = _read_frontier(root)
    if cached is None or cached.size != held.size or cached.root() != held.root:
        return f"{FRONTIER_FILE} does not reproduce {CHECKPOINT_FILE}"
    try:
        head = ledger.head()
        if head.seq < held.size:
            return f"the ledger is shorter than {CHECKPOINT_FILE}"
        data = ledger.read(held.size)
        if blake3.blake3(data).digest() != cached.last:
            return f"ledger entry {held.size} is not the one {CHECKPOINT_FILE} saw"
        new = _extend(cached, ledger.entries(held.size + 1), head.seq)
    except CasError as e:
        return f"the ledger does not extend {CHECKPOINT_FILE} simply: {e}"
    if head.entry is None or new.last != bytes.fromhex(head.entry.hex):
        return "the ledger HEAD is not its last entry"
    return held.size, data


def _write(root: Path, frontier: _Frontier) -> Checkpoint:
    new = Checkpoint(frontier.size, frontier.root())
    path = workspace_checkpoint(root)
    makedirs_durable(path.parent)
    atomic_write(root / FRONTIER_FILE, canonical(frontier.to_dict()))
    atomic_write(path, canonical(new.to_dict()))
    return new


def _own_directory(meta: Path) -> None:
    """`.promote` must be the workspace's own directory (created when missing): a
    symlink (or anything else) there would take the checkpoint's writes elsewhere.

    Raises:
        UsageError (2): `.promote` is a symlink or not a directory.
    """
    import stat

    try:
        mode = os.lstat(meta).st_mode
    except FileNotFoundError:
        makedirs_durable(meta)
        return
    if not stat.S_ISDIR(mode):
        what = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
        raise UsageError(f"{meta.name} is {what}: the checkpoint is not written through it")


def advance(root: Path, ledger: CommitBackend) -> Checkpoint | None:
    """Move the workspace's checkpoint forward to the ledger's head, after checking
    that the head is consistent with it. Call after a clean verification or a commit.

    Returns the checkpoint now held (None: the ledger is empty and none was held).

    Raises:
        LinkageError (3): the ledger is shorter than, or inconsistent with, the
            checkpoint held; nothing is written.
        UsageError, InvalidDocument (2): the checkpoint file is unreadable or malformed,
            or `.promote` is a symlink (nothing is written through it).
    """
    from promote.errors import LinkageError

    path = workspace_checkpoint(root)
    _own_directory(path.parent)
    with _locked(root):
        held = read_checkpoint(path, missing_ok=True)
        if held is not None:
            fast = _fast_frontier(root, ledger, held)
            if fast is not None:
                return held if fast.size == held.size else _write(root, fast)
            found = check_checkpoint(ledger, held, CHECKPOINT_FILE)
            if found:
                raise LinkageError(f"{found[0].location}: {found[0].detail}")
        try:
            head = ledger.head()
            new = _extend(_EMPTY, ledger.entries(), head.seq)
            if head.entry is not None and new.last != bytes.fromhex(head.entry.hex):
                raise IntegrityError(f"the last entry does not hash to the head {head.entry}")
        except CasError as e:
            raise LinkageError(f"cannot checkpoint the ledger: {e}") from None
        if held is not None and new.size <= held.size:
            if new.size == held.size and new.root() == held.root:
                # the same checkpoint: only its frontier, which did not vouch, is rewritten
                atomic_write(root / FRONTIER_FILE, canonical(new.to_dict()))
            return held
        if new.size == 0:
            return held
        return _write(root, new)
