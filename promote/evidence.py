"""The evidence of a capsule, read from the store and checked for the policy (ADR 10).

For each attestation a capsule names (`evidence.attestations`, v2), in order:

1. the envelope is read from the store by digest: missing or corrupt is exit 3, larger
   than `MAX_ENVELOPE` or malformed (`dsse.load_envelope`) is exit 2;
2. its signatures are verified against the trust roots the gate is given (those the
   ledger head pins). A signature that does not verify, by an unknown key, or a second
   one by the same key or signer never counts; an envelope with no trusted signature
   at all is exit 3 (`Untrusted`). What remains is data: the distinct signers, and the
   roles whose threshold they meet;
3. the payloadType must be in-toto's and the payload a Statement v1 (exit 2);
4. every subject is matched against the targets' bytes: a `blake3` digest equal to a
   target's digest matches that target (the gate has re-hashed it); a subject naming
   only `sha256` matches each target whose bytes have that SHA-256. A subject that
   matches a target by one algorithm and not by another is lying: exit 3. SHA-256 is
   computed only for targets some subject asks about, once each.

A v1 capsule's CHECK report becomes one attestation with no signer and no role, its
predicate the report's `status` and `checks` (the default policy refuses it as
unsigned). The records (`Attestation.to_input`) are what `input.attestations` holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import IntegrityError, ObjectMissing
from promote.attest.dsse import MAX_ENVELOPE, load_envelope, verify_envelope
from promote.attest.errors import InvalidEnvelope, Untrusted
from promote.attest.statement import CHECK_PREDICATE, statement_of
from promote.attest.trust import ROLES, TrustRoots, get_verification_result
from promote.canonical import MAX_UNTRUSTED
from promote.errors import InvalidCapsule, InvalidDocument, LinkageError
from promote.model import Capsule, Target, load_check_report
from promote.policy.engines import check_input

__all__ = [
    "MAX_EVIDENCE",
    "MAX_REPORT",
    "Attestation",
    "read_evidence",
]

#: All the envelopes of one capsule together (the policy input carries them all).
#: A subject as `promote attest` writes it (both digests) takes about 245 bytes of
#: envelope, so the 100,000 targets a capsule may name need about 24.5 MB (ADR 16).
MAX_EVIDENCE = MAX_UNTRUSTED
#: The largest v1 CHECK report the gate reads (from outside: ADR 19).
MAX_REPORT = MAX_UNTRUSTED


@attrs.frozen
class Attestation:
    """One piece of evidence as the policy sees it.

    `signers`: the ids of the distinct trusted signers whose signature verifies;
    `roles`: the roles whose threshold those signers meet; `subjects`: each with the
    `targets` whose bytes it was matched against. `problems` (signatures that did not
    count) is for the report, never for the policy.
    """

    digest: Digest
    size: int
    signers: tuple[str, ...]
    roles: tuple[str, ...]
    predicate_type: str
    subjects: tuple[Mapping[str, Any], ...] = attrs.field(eq=False)
    predicate: Mapping[str, Any] = attrs.field(eq=False)
    problems: tuple[str, ...] = ()

    @property
    def ref(self) -> ObjectRef:
        return ObjectRef(self.digest, self.size)

    def to_input(self) -> dict[str, Any]:
        return {
            "digest": str(self.digest),
            "signers": list(self.signers),
            "roles": list(self.roles),
            "predicate_type": self.predicate_type,
            "subjects": [dict(s) for s in self.subjects],
            "predicate": self.predicate,
        }


def _target_dict(t: Target) -> dict[str, Any]:
    assert t.ref is not None
    return {"path": t.path, "digest": str(t.ref.digest), "size": t.ref.size}


class _Targets:
    """The capsule's targets that name an object, by digest, with SHA-256 on demand."""

    def __init__(
        self, store: ObjectStore, targets: Sequence[Target], sha256: Mapping[Digest, str]
    ) -> None:
        self.store = store
        self.targets = [t for t in targets if t.ref is not None]
        self.by_blake3: dict[str, list[Target]] = {}
        for t in self.targets:
            assert t.ref is not None
            self.by_blake3.setdefault(t.ref.digest.hex, []).append(t)
        self._sha256: dict[Digest, str] = dict(sha256)

    def sha256(self, t: Target) -> str:
        assert t.ref is not None
        digest = t.ref.digest
        if digest not in self._sha256:
            h = hashlib.sha256()
            try:
                for chunk in self.store.open(digest):  # verified against the BLAKE3 name
                    h.update(chunk)
            except IntegrityError as e:
                raise LinkageError(f"target {t.path}: {e}") from None
            self._sha256[digest] = h.hexdigest()
        return self._sha256[digest]

    def match(self, where: str, name: str, digest: Mapping[str, str]) -> list[Target]:
        """The targets whose bytes `digest` names; exit 3 for a subject that lies."""
        if "blake3" in digest:
            matched = self.by_blake3.get(digest["blake3"], [])
        else:
            matched = [t for t in self.targets if self.sha256(t) == digest["sha256"]]
        if "sha256" in digest:
            for t in matched:
                if self.sha256(t) != digest["sha256"]:
                    assert t.ref is not None
                    raise LinkageError(
                        f"{where}: subject {name[:200]!r} names the blake3 of {t.path}"
                        f" ({t.ref.digest}) with a sha256 that does not match those bytes"
                    )
        return matched


def _read(store: ObjectStore, digest: Digest, limit: int, what: str) -> bytes:
    try:
        size = store.size(digest)
        if size > limit:
            raise InvalidEnvelope(f"{what}: larger than {limit} bytes")
        return store.read_bytes(digest, limit=limit)
    except ObjectMissing:
        raise LinkageError(f"{what} is not in the store") from None
    except IntegrityError as e:
        raise LinkageError(f"{what}: {e}") from None


def _roles(trust: TrustRoots, signers: frozenset[str]) -> tuple[str, ...]:
    return tuple(r for r in ROLES if len(signers & trust.holders(r)) >= trust.thresholds[r])


def _attestation(
    store: ObjectStore, digest: Digest, trust: TrustRoots, targets: _Targets
) -> Attestation:
    what = f"attestation {digest}"
    data = _read(store, digest, MAX_ENVELOPE, what)
    try:
        envelope = load_envelope(data)
    except InvalidEnvelope as e:
        raise InvalidEnvelope(f"{what}: {e}") from None
    found = verify_envelope(envelope, trust.keys)
    signers = frozenset(trust.signer_of(k).id for k in found.verified)
    if not signers:
        reason = get_verification_result(envelope, trust, None).reason()
        raise Untrusted(f"{what}: {reason}")
    try:
        statement = statement_of(envelope)
        check_input(statement.predicate, "predicate")
    except InvalidDocument as e:
        raise type(e)(f"{what}: {e}") from None
    subjects = []
    for s in statement.subjects:
        d = dict(s.digest)
        matched = targets.match(what, s.name, d)
        subjects.append(
            {"name": s.name, "digest": d, "targets": [_target_dict(t) for t in matched]}
        )
    return Attestation(
        digest,
        len(data),
        tuple(sorted(signers)),
        _roles(trust, signers),
        statement.predicate_type,
        tuple(subjects),
        statement.predicate,
        found.problems,
    )


def _v1_report(store: ObjectStore, digest: Digest, targets: _Targets) -> Attestation:
    """A v1 capsule's CHECK report, as an attestation that nobody signed."""
    try:
        data = store.read_bytes(digest, limit=MAX_REPORT)
    except IntegrityError as e:
        raise LinkageError(f"CHECK report: {e}") from None
    try:
        report, doc = load_check_report(data)
    except InvalidDocument as e:
        raise LinkageError(str(e)) from None
    subjects = []
    for ref in sorted(report.subjects):
        matched = [t for t in targets.by_blake3.get(ref.digest.hex, []) if t.ref == ref]
        subjects.append(
            {
                "name": str(ref.digest),
                "digest": {ref.digest.algorithm: ref.digest.hex},
                "targets": [_target_dict(t) for t in matched],
            }
        )
    predicate = {"status": doc["status"], "checks": doc["checks"]}
    return Attestation(digest, len(data), (), (), CHECK_PREDICATE, tuple(subjects), predicate)


def read_evidence(
    store: ObjectStore,
    capsule: Capsule,
    trust: TrustRoots,
    sha256: Mapping[Digest, str] | None = None,
) -> list[Attestation]:
    """Every attestation `capsule` names, verified against `trust` and matched
    against the targets' bytes (see the module docstring), in the capsule's order.
    `sha256` holds the SHA-256 of target objects whose bytes the caller has just
    verified against their BLAKE3 names (the gate's step 2); the others are read.

    Raises:
        InvalidEnvelope, InvalidStatement, InvalidCapsule (2): malformed evidence, or
            more than `MAX_EVIDENCE` bytes of it.
        LinkageError (3): evidence missing or corrupt, a subject that lies.
        Untrusted (3): an envelope no trusted key signed.
    """
    targets = _Targets(store, capsule.targets, sha256 or {})
    if capsule.version == 1:
        return [_v1_report(store, capsule.evidence[0], targets)]
    total = 0
    for digest in capsule.evidence:
        try:
            total += store.size(digest)
        except ObjectMissing:
            raise LinkageError(f"attestation {digest} is not in the store") from None
    if total > MAX_EVIDENCE:
        raise InvalidCapsule(
            f"capsule evidence: {total} bytes of attestations, more than {MAX_EVIDENCE}"
        )
    return [_attestation(store, d, trust, targets) for d in capsule.evidence]
