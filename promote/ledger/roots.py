"""The objects a workspace's ledger keeps alive: the roots of `cas gc`.

Every entry names its capsule, its evidence (the attestations; a v1 entry's CHECK
report), decision, policy bundle, trust roots (v2), the pointer states before and
after, and the objects its changes point at (old and new). Each
decision in turn names the policy bundle and the input document it was made from,
so that anyone can re-run it. All of these, for every entry ever committed, are
roots: the ledger is an audit trail, and an audit trail whose evidence was collected
is worthless.
"""

from __future__ import annotations

from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import CasError, IntegrityError
from promote.canonical import load_json
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import EMPTY_STATE, parse_entry
from promote.model import State

__all__ = ["ledger_roots"]


def ledger_roots(ledger: CommitBackend, store: ObjectStore) -> set[Digest]:
    """Every digest the ledger references, directly or through its decisions and states.

    Raises:
        IntegrityError: when an entry, a decision or a state cannot be read: the
            roots would be incomplete, and a collector must not guess.
    """
    roots: set[Digest] = set()
    head = ledger.head()
    roots.add(head.state.digest)
    for seq in range(1, head.seq + 1):
        entry = parse_entry(ledger.read(seq))
        refs = entry.refs()
        for c in entry.changes:
            refs += [r for r in (c.before, c.after) if r is not None]
        roots.update(r.digest for r in refs)
        decision = ObjectRef.from_dict(entry.doc["decision"])
        try:
            doc = load_json(store.read_bytes(decision.digest), "decision")
            for key in ("policy", "input"):
                roots.add(ObjectRef.from_dict(doc[key]).digest)
            for key in ("state_before", "state_after"):
                ref = ObjectRef.from_dict(entry.doc[key])
                if ref != EMPTY_STATE.ref():
                    state = State.from_dict(load_json(store.read_bytes(ref.digest), "state"))
                    roots.update(r.digest for r in state.pointers.values())
        except (CasError, KeyError, TypeError) as e:
            raise IntegrityError(
                f"ledger entry {seq}: cannot read the objects it names ({e}); gc refuses"
                " to guess its roots (run 'cas fsck')"
            ) from None
    return roots
