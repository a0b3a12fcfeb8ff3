"""The commit backend: the small interface a promotion commits through.

Read the head, and `commit(base, entry, state)`, a compare-and-swap that appends the
entry and moves the pointer state in one atomic step, or raises ConflictError.
`promote.ledger.files.FileLedger` is the local implementation;
`promote.ledger.pg.PgLedger` fulfils the same contract on PostgreSQL.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator

from cas.backend import ObjectStore
from cas.digest import ObjectRef
from cas.errors import IntegrityError
from promote.canonical import load_json
from promote.errors import InvalidDocument
from promote.ledger.entry import EMPTY_STATE, Entry, Head
from promote.model import State

__all__ = ["CommitBackend", "load_state"]


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
