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
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cas.backend import Problem
from cas.errors import CasError, IntegrityError, UsageError
from cas.fsutil import atomic_write, makedirs_durable
from promote.canonical import canonical
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend
from promote.ledger.merkle import ProofError
from promote.ledger.proofs import (
    Checkpoint,
    ledger_checkpoint,
    load_checkpoint,
    prove_consistency,
    verify_consistency_proof,
)

__all__ = [
    "CHECKPOINT_FILE",
    "advance",
    "check_checkpoint",
    "read_checkpoint",
    "refuse_rollback",
    "workspace_checkpoint",
]

#: Relative to the workspace root.
CHECKPOINT_FILE = ".promote/checkpoint.json"
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


def check_checkpoint(ledger: CommitBackend, cp: Checkpoint, name: str) -> list[Problem]:
    """Whether the ledger today extends the one `cp` describes. One `rollback`
    problem naming `name` when it does not; none when it does."""
    try:
        size = ledger.head().seq
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
    try:
        new = ledger_checkpoint(ledger, size)
        proof = prove_consistency(ledger, cp.size, size)
        verify_consistency_proof(proof, cp, new)
    except ProofError as e:
        return [
            Problem(
                "rollback",
                name,
                f"the ledger's first {cp.size} entries are not the ones this checkpoint saw"
                f" (the chain was rewritten): {e}",
            )
        ]
    except IntegrityError:
        return []  # a broken chain: the ledger checks report it
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


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    from promote.ledger.files import file_lock

    with file_lock(root / ".promote/checkpoint.lock", what="the checkpoint lock"):
        yield


def advance(root: Path, ledger: CommitBackend) -> Checkpoint | None:
    """Move the workspace's checkpoint forward to the ledger's head, after checking
    that the head is consistent with it. Call after a clean verification or a commit.

    Returns the checkpoint now held (None: the ledger is empty and none was held).

    Raises:
        LinkageError (3): the ledger is shorter than, or inconsistent with, the
            checkpoint held; nothing is written.
        UsageError, InvalidDocument (2): the checkpoint file is unreadable or malformed.
    """
    from promote.errors import LinkageError

    path = workspace_checkpoint(root)
    with _locked(root):
        held = read_checkpoint(path, missing_ok=True)
        if held is not None:
            found = check_checkpoint(ledger, held, CHECKPOINT_FILE)
            if found:
                raise LinkageError(f"{found[0].location}: {found[0].detail}")
        try:
            new = ledger_checkpoint(ledger)
        except CasError as e:
            raise LinkageError(f"cannot checkpoint the ledger: {e}") from None
        if held is not None and new.size <= held.size:
            return held
        if new.size == 0:
            return held
        makedirs_durable(path.parent)
        atomic_write(path, canonical(new.to_dict()))
        return new
