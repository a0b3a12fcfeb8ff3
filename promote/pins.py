"""The pinned policy and trust roots (ADR 10, "Pinned policy and trust").

Each ledger entry records the policy bundle (`policy`) and the trust roots (`trust`,
from entry v2 on) in force after it. Before deciding, the gate compares what the
workspace holds (`control/policy/`, `control/promote/trust.json`) with what the head
pins, and refuses a difference: only a control promotion (`promote control`) changes
the pins. An empty ledger pins nothing: the first entry pins what the workspace holds
(trust on first use), and an entry without `trust` (v1) pins no trust roots.
"""

from __future__ import annotations

import attrs

from cas.backend import ObjectStore
from cas.digest import ObjectRef, hash_bytes
from cas.errors import IntegrityError
from promote.attest.trust import TRUST_PATH, TrustRoots, load_trust
from promote.errors import Denied, LinkageError, PolicyError, WorkspaceError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Head, parse_entry
from promote.policy.engines import PolicyBundle
from promote.workspace import Workspace

__all__ = [
    "CONTROL_COMMAND",
    "MAX_TRUST",
    "Pins",
    "check_pins",
    "head_pins",
    "load_pinned_bundle",
    "load_pinned_trust",
    "workspace_trust",
]

#: trust.json is a few KiB per signer; 256 signers of 16 keys stay well below.
MAX_TRUST = 4 << 20
#: What to run to promote a change of the policy or the trust roots.
CONTROL_COMMAND = "promote control --key ADMIN_KEY"


@attrs.frozen
class Pins:
    """What the head entry pins (None: nothing pinned)."""

    policy: ObjectRef | None
    trust: ObjectRef | None
    seq: int


def workspace_trust(ws: Workspace) -> TrustRoots:
    """The workspace's trust roots, `control/promote/trust.json`.

    Raises:
        WorkspaceError (2): missing or unreadable. InvalidTrust (2): malformed.
    """
    path = ws.root / TRUST_PATH
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TRUST + 1)
    except FileNotFoundError:
        raise WorkspaceError(
            f"no trust roots: {TRUST_PATH} is missing ('promote init' writes one)"
        ) from None
    except OSError as e:
        raise WorkspaceError(f"{TRUST_PATH}: {e.strerror}") from None
    if len(data) > MAX_TRUST:
        raise WorkspaceError(f"{TRUST_PATH}: larger than {MAX_TRUST} bytes")
    return load_trust(data, TRUST_PATH)


def head_pins(ledger: CommitBackend, head: Head) -> Pins:
    """What the head entry pins.

    Raises:
        IntegrityError (3): the head entry does not parse.
    """
    if head.seq == 0:
        return Pins(None, None, 0)
    entry = parse_entry(ledger.read(head.seq))
    if entry.hash != head.entry:
        raise IntegrityError(f"ledger entry {head.seq} is not the head {head.entry}")
    trust = entry.doc.get("trust")
    return Pins(
        ObjectRef.from_dict(entry.doc["policy"]),
        ObjectRef.from_dict(trust) if trust is not None else None,
        head.seq,
    )


def check_pins(pins: Pins, bundle: PolicyBundle, trust: TrustRoots) -> None:
    """Refuse a workspace policy or trust roots other than those pinned.

    Raises:
        Denied (4): one line naming both digests and the command that promotes the change.
    """
    for what, pinned, held in (
        ("policy bundle", pins.policy, bundle.ref()),
        ("trust roots", pins.trust, hash_bytes(trust.encode())),
    ):
        if pinned is not None and pinned != held:
            raise Denied(
                f"the workspace's {what} {held.digest} is not the one ledger entry"
                f" {pins.seq} pins, {pinned.digest}: promote the change with"
                f" '{CONTROL_COMMAND}'"
            )


def load_pinned_bundle(store: ObjectStore, ref: ObjectRef) -> PolicyBundle:
    """The pinned policy bundle, from the store.

    Raises:
        LinkageError (3): missing, corrupt or not a bundle.
    """
    try:
        store.verify(ref)
        return PolicyBundle.decode(store.read_bytes(ref.digest, limit=ref.size))
    except IntegrityError as e:
        raise LinkageError(f"the pinned policy bundle: {e}") from None
    except (PolicyError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise LinkageError(f"the pinned policy bundle {ref.digest}: {e}") from None


def load_pinned_trust(store: ObjectStore, ref: ObjectRef) -> TrustRoots:
    """The pinned trust roots, from the store.

    Raises:
        LinkageError (3): missing or corrupt. InvalidTrust (2): malformed.
    """
    try:
        store.verify(ref)
        data = store.read_bytes(ref.digest, limit=MAX_TRUST)
    except IntegrityError as e:
        raise LinkageError(f"the pinned trust roots: {e}") from None
    return load_trust(data, f"the pinned trust roots {ref.digest}")
