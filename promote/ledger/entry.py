"""Ledger entries: canonical JSON (RFC 8785), hash-linked.

An entry's hash is the BLAKE3 of exactly its bytes; each entry names the hash of the
one before, so editing, dropping or reordering any entry breaks every link after it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import IntegrityError
from promote.canonical import canonical, load_json
from promote.errors import InvalidDocument
from promote.model import Change, State

__all__ = [
    "EMPTY_STATE",
    "ENTRY_SCHEMA",
    "GENESIS_BASE",
    "Entry",
    "Head",
    "build_entry",
    "parse_entry",
]

ENTRY_SCHEMA = "promote-ledger-entry/v1"
EMPTY_STATE = State()
#: The `base` of a capsule built against the empty ledger.
GENESIS_BASE = Digest("blake3", "0" * 64)


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
