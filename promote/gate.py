"""`promote <capsule>`: the gate, step by step.

1. validate the capsule (schema, then meaning: path hygiene, allow-list, collisions)
2. verify every digest against the store (present, right size, re-hashes); refuse a
   policy or trust roots other than those the ledger head pins (`promote.pins`)
3. read the evidence: verify each attestation against the pinned trust roots and
   match its subjects against the targets' bytes (`promote.evidence`)
4. check the compare-and-swap guards, then ask the policy (failing closed); for a
   control capsule, run the new policy's tests first and ask the pinned policy
5. commit: pointer state plus ledger entry, one compare-and-swap
6. materialize the view from the committed state
7. write the report (on every run: promoted, denied or failed)

Steps 1-4 decide without writing; `plan` stops there, which is `--dry-run`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from cas._crash import crashpoint
from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import CasError, ConflictError, IntegrityError, ObjectMissing
from cas.fsutil import atomic_write, makedirs_durable, open_error
from cas.local import LocalStore
from promote.attest.errors import Untrusted
from promote.attest.keys import PrivateKey
from promote.attest.statement import CONTROL_PREDICATE
from promote.attest.trust import TrustRoots
from promote.canonical import MAX_DOCUMENT, MAX_UNTRUSTED, canonical, pretty
from promote.errors import Denied, InvalidCapsule, LinkageError, PolicyError
from promote.evidence import Attestation, read_evidence
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Entry, Head, build_entry, sign_entry
from promote.model import ABSENT, Capsule, Change, State, load_capsule
from promote.paths import check_allowed, check_layout, check_path
from promote.pins import (
    Pins,
    check_pins,
    head_pins,
    load_pinned_bundle,
    load_pinned_trust,
    workspace_trust,
)
from promote.policy.engines import Decision, PolicyBundle, decide, engine_from_config, load_bundle
from promote.rollback import refuse_rollback_at
from promote.workspace import Workspace

__all__ = ["Plan", "Outcome", "plan", "promote", "read_capsule"]

REPORT_SCHEMA = "promote-report/v1"
INPUT_SCHEMA = "promote-policy-input/v2"
#: A capsule is read from outside: at most MAX_UNTRUSTED bytes (ADR 19).
MAX_CAPSULE = MAX_UNTRUSTED


@attrs.frozen
class Plan:
    """Everything decided before anything is written."""

    capsule_bytes: bytes
    capsule: Capsule
    #: The attestations, as the entry names them (their contents are in the input).
    evidence: list[ObjectRef]
    head: Head
    state_before: State
    state_after: State
    changes: list[Change]
    #: The bundle that decided (for a control capsule: the pinned one).
    bundle: PolicyBundle
    #: The trust roots in force after this entry (for a control capsule: the new ones).
    trust: TrustRoots
    input_bytes: bytes
    decision: Decision
    entry: Entry
    #: A control capsule's new policy bundle (None for a release).
    new_bundle: PolicyBundle | None = None
    #: The VSA the entry names: its DSSE envelope's bytes (`promote.vsa`).
    vsa: bytes = b""

    @property
    def capsule_ref(self) -> ObjectRef:
        return hash_bytes(self.capsule_bytes)


@attrs.frozen
class Outcome:
    """What a run did, as reported."""

    status: str
    exit_code: int
    reasons: list[str]
    capsule: ObjectRef | None = None
    decision: Decision | None = None
    ledger: Head | None = None
    changes: list[Change] = attrs.Factory(list)
    entry: Entry | None = None

    def to_dict(self) -> dict[str, Any]:
        decision = None
        if self.decision is not None:
            d = self.decision
            decision = {
                "allow": d.allow,
                "deny": list(d.deny),
                "engine": f"{d.engine} {d.engine_version}",
                "policy": str(d.policy.digest),
                "input": str(d.input.digest),
                "digest": str(hash_bytes(d.encode()).digest),
            }
        out: dict[str, Any] = {
            "schema": REPORT_SCHEMA,
            "status": self.status,
            "reasons": self.reasons,
            "capsule": str(self.capsule.digest) if self.capsule else None,
            "decision": decision,
            "ledger": (
                {"seq": self.ledger.seq, "entry": str(self.ledger.entry)} if self.ledger else None
            ),
            "changes": [c.to_dict() for c in self.changes],
        }
        if self.entry is not None:
            out["plan"] = {"entry": dict(self.entry.doc), "entry_hash": str(self.entry.hash)}
        return out


class CapsuleTooLarge(InvalidCapsule):
    """A capsule file larger than MAX_CAPSULE: it was opened and read, so a real
    promotion attempt (the report records it), refused as too large."""


def read_capsule(ws: Workspace, arg: str) -> bytes:
    """The capsule's bytes, from a file path or from the store by digest.

    Raises:
        UsageError: an unreadable file. LinkageError: a digest the store lacks.
        CapsuleTooLarge: a file larger than MAX_CAPSULE (read: a real attempt).
    """
    if arg.startswith("blake3:"):
        digest = Digest.parse(arg)
        try:
            return ws.store.read_bytes(digest, limit=MAX_CAPSULE)
        except IntegrityError as e:
            raise LinkageError(f"capsule: {e}") from None
    path = Path(arg)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CAPSULE + 1)
    except OSError as e:
        raise open_error(
            arg,
            e,
            missing="no such capsule file",
            directory="is a directory, not a capsule",
            denied=None,
            verb="read",
        ) from None
    if len(data) > MAX_CAPSULE:
        raise CapsuleTooLarge(f"{arg}: larger than {MAX_CAPSULE} bytes")
    return data


def _verify_ref(ws: Workspace, ref: ObjectRef, what: str) -> str:
    """Check `ref` as `ObjectStore.verify` does (present, of its size, re-hashing to
    its BLAKE3 name) and return the SHA-256 of the bytes, taken in the same pass: the
    evidence's subjects and the VSA name the targets by it, and would otherwise read
    every target twice more.

    Raises:
        LinkageError (3): missing, of another size, or not hashing to its name.
    """
    h = hashlib.sha256()
    try:
        size = ws.store.size(ref.digest)
        if size != ref.size:
            raise IntegrityError(
                f"object {ref.digest} has {size} bytes, but {ref.size} were promised"
            )
        for chunk in ws.store.open(ref.digest):  # the last chunk only once it verifies
            h.update(chunk)
    except ObjectMissing:
        raise LinkageError(f"{what}: object {ref.digest} is not in the store") from None
    except IntegrityError as e:
        raise LinkageError(f"{what}: {e}") from None
    return h.hexdigest()


def _check_guards(capsule: Capsule, head: Head, state: State) -> None:
    if capsule.base is not None and capsule.base != head.base:
        raise ConflictError(
            f"stale capsule: it expects ledger head {capsule.base}, but the head is"
            f" {head.base} (entry {head.seq})"
        )
    for t in capsule.targets:
        if t.delete and state.get(t.path) is None:
            raise ConflictError(f"stale capsule: {t.path} is to be deleted, but it is absent")
        if t.expect is None:
            continue
        held = state.get(t.path)
        if t.expect == ABSENT:
            if held is not None:
                raise ConflictError(f"stale capsule: {t.path} expected absent, holds {held.digest}")
        elif held is None or held.digest != t.expect:
            now = held.digest if held else "absent"
            raise ConflictError(f"stale capsule: {t.path} expected {t.expect}, holds {now}")


def policy_input(
    *,
    capsule_doc: Any,
    capsule_ref: ObjectRef,
    capsule: Capsule,
    attestations: list[Attestation],
    head: Head,
    state: State,
    allow_list: list[str],
    control: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The policy input, `promote-policy-input/v2` (control/promote/promote_protocol.md).

    Pure: the same capsule, evidence, state, head and allow-list give the same input,
    so a verifier can rebuild it from what the ledger records.
    """
    current = {}
    for t in capsule.targets:
        held = state.get(t.path)
        current[t.path] = held.to_dict() if held else None
    return {
        "schema": INPUT_SCHEMA,
        "kind": capsule.kind,
        "capsule": capsule_doc,
        "capsule_digest": str(capsule_ref.digest),
        "attestations": [a.to_input() for a in attestations],
        "current": current,
        "allow_list": list(allow_list),
        "ledger": {"seq": head.seq, "head": str(head.entry) if head.entry else None},
        "control": dict(control) if control is not None else None,
    }


def _control(
    ws: Workspace, pins: Pins, engine: str | None
) -> tuple[PolicyBundle, PolicyBundle, TrustRoots, TrustRoots]:
    """A control capsule's (pinned bundle, new bundle, pinned trust, new trust), once
    the new policy's tests pass.

    Raises:
        Denied (4): the new policy does not load, or its tests do not pass.
    """
    from promote.policy.testing import PolicyTestError, run_policy_tests, tester_from_config

    try:
        new_bundle = load_bundle(ws.policy_dir, ws.policy_package)
        tested = load_bundle(ws.policy_dir, ws.policy_package, tests=True)
    except PolicyError as e:
        raise Denied(f"control change: the new policy: {e}") from None
    new_trust = workspace_trust(ws)
    pinned_bundle = (
        load_pinned_bundle(ws.store, pins.policy) if pins.policy is not None else new_bundle
    )
    pinned_trust = load_pinned_trust(ws.store, pins.trust) if pins.trust is not None else new_trust
    try:
        run = run_policy_tests(tester_from_config(ws.engine_config, engine), tested)
    except PolicyTestError as e:
        raise Denied(f"control change: the new policy's tests: {e}") from None
    if not run.ok or not run.results:
        failed = [r.ref for r in run.results if r.status in ("fail", "error")]
        why = f"{len(failed)} failed ({', '.join(failed[:5])})" if failed else "no test passed"
        raise Denied(
            f"control change: the new policy's tests do not pass: {why} (promote policy test)"
        )
    return pinned_bundle, new_bundle, pinned_trust, new_trust


def _check_control_evidence(
    ws: Workspace,
    evidence: list[Attestation],
    want: Mapping[str, str],
    new_trust: TrustRoots,
    trust_changes: bool,
) -> None:
    """A control capsule's evidence must include a control-change attestation naming
    exactly the new digests; a trust change must also meet the admin threshold of the
    new trust roots (old and new keys, as TUF rotates a root).

    Raises:
        LinkageError (3): no attestation names the change. Untrusted (3): the new
            trust roots' admin threshold is not met.
    """
    from promote.attest.dsse import load_envelope
    from promote.attest.trust import get_verification_result

    naming = [
        a
        for a in evidence
        if a.predicate_type == CONTROL_PREDICATE and dict(a.predicate) == dict(want)
    ]
    if not naming:
        raise LinkageError(
            f"control change: no attestation of type {CONTROL_PREDICATE} names the"
            f" workspace's policy {want['policy']} and trust roots {want['trust']}"
        )
    if not trust_changes:
        return
    for a in naming:
        envelope = load_envelope(ws.store.read_bytes(a.digest, limit=a.size))
        result = get_verification_result(envelope, new_trust, "admin")
        if result.verified:
            return
    raise Untrusted(
        f"control change: a change of the trust roots must be signed to the admin threshold"
        f" of the new trust roots too: {result.reason()}"
    )


def _runner_key(ws: Workspace, trust: TrustRoots) -> PrivateKey:
    """The runner key, whose public key must be a runner of the trust roots in force.

    Raises:
        InvalidKey (2): no usable key file. Untrusted (3): a key no runner holds.
    """
    from promote.attest.keys import key_id
    from promote.attest.runner import load_runner_key

    key = load_runner_key(ws.root)
    kid = key_id(key.public_key())
    if kid not in trust.keys or "runner" not in trust.signer_of(kid).roles:
        raise Untrusted(
            f"the runner key {kid} is not a runner's key in the trust roots: the entries it"
            " signed would not verify"
        )
    return key


def _vsa(
    ws: Workspace,
    key: PrivateKey,
    trust: TrustRoots,
    head: Head,
    changes: list[Change],
    *,
    evidence: list[ObjectRef],
    decision: Decision,
    known: Mapping[Digest, str],
    pinned: Mapping[str, bytes],
) -> bytes:
    """The VSA of the entry after `head` (`promote.vsa`): its DSSE envelope's bytes,
    signed by the runner key. Objects held in memory (the bundles, the trust roots, the
    state after) are hashed from these bytes, the targets' SHA-256 is `known` (taken
    when step 2 verified them), the rest is streamed from the store."""
    from promote.attest.keys import key_id
    from promote.vsa import build_vsa, sign_vsa, vsa_subjects

    in_memory = {hash_bytes(b).digest: b for b in pinned.values()}

    def sha256(ref: ObjectRef) -> str:
        if ref.digest in known:
            return known[ref.digest]
        if ref.digest in in_memory:
            return hashlib.sha256(in_memory[ref.digest]).hexdigest()
        h = hashlib.sha256()
        try:
            for chunk in ws.store.open(ref.digest):
                h.update(chunk)
        except IntegrityError as e:
            raise LinkageError(f"VSA: {e}") from None
        return h.hexdigest()

    doc = {
        "seq": head.seq + 1,
        "changes": [c.to_dict() for c in changes],
        "policy": hash_bytes(pinned["policy"]).to_dict(),
        "trust": hash_bytes(pinned["trust"]).to_dict(),
        "state_after": hash_bytes(pinned["state"]).to_dict(),
    }
    statement = build_vsa(
        seq=head.seq + 1,
        runner=trust.signer_of(key_id(key.public_key())).id,
        subjects=vsa_subjects(doc),
        policy=decision.policy,
        evidence=evidence,
        sha256=sha256,
        passed=decision.allow,
    )
    return sign_vsa(statement, key).encode()


def _canonical_by_member(doc: dict[str, Any]) -> bytes:
    """`canonical(doc)`, encoded one member at a time, each removed from `doc` (and so
    freed) once encoded: the whole document is never held as objects and as text and
    as bytes at once (at 100,000 targets the policy input is 47 MB; issue 15).

    RFC 8785 writes an object as its members sorted by key (code units of UTF-16;
    for the ASCII keys of the policy input, code point order), each `key:value` with
    the value in canonical form, comma-separated, in braces: the same bytes. justify
    rebuilds the input with `canonical` and compares, so a difference is found.
    """
    if not all(type(k) is str and k.isascii() for k in doc):
        return canonical(doc)
    out = io.BytesIO(b"{")  # grown in place; its value is taken without a copy
    out.seek(1)
    for i, k in enumerate(sorted(doc)):
        out.write(b"," + canonical(k) + b":" if i else canonical(k) + b":")
        out.write(canonical(doc.pop(k)))
    out.write(b"}")
    return out.getvalue()


def _check_readable(what: str, size: int) -> None:
    """Refuse, before the commit point, a promotion that would store a document larger
    than the ledger's readers accept (verify, justify and log read at most
    MAX_DOCUMENT bytes of an entry, a state or a decision's input): committed, it
    could never be verified again.

    Raises:
        InvalidCapsule (2): naming the document and its size.
    """
    if size > MAX_DOCUMENT:
        raise InvalidCapsule(
            f"the {what} of this promotion would be {size} bytes, more than the"
            f" {MAX_DOCUMENT} a reader of the ledger accepts: promote fewer targets at once"
        )


def plan(
    ws: Workspace, ledger: CommitBackend, capsule_bytes: bytes, engine: str | None = None
) -> Plan:
    """Steps 1 to 4: decide, writing nothing.

    Raises:
        InvalidCapsule (2), LinkageError (3), Denied (4), ConflictError (5).
        A policy deny does NOT raise: the plan carries the decision.
    """
    # 1. the capsule: schema, then meaning
    capsule, capsule_doc = load_capsule(capsule_bytes)
    for t in capsule.targets:
        check_path(t.path)
    for t in capsule.targets:
        check_allowed(t.path, ws.allow_list)
    head = ledger.head()
    # the head built on must extend the workspace's checkpoint (ADR 10, "Rollback"):
    # refused here, before anything is stored or committed, reading only the entries
    # added since the checkpoint
    refuse_rollback_at(ws.root, ledger, head)
    state = load_state(ws.store, head.state)
    check_layout([t.path for t in capsule.targets], state.pointers)

    # 2. every digest: present, of its size, re-hashing to its name; then the pins
    sha256: dict[Digest, str] = {}
    for t in capsule.targets:
        if t.ref is not None:  # a delete names no object
            sha256[t.ref.digest] = _verify_ref(ws, t.ref, f"target {t.path}")
    pins = head_pins(ledger, head)
    control: dict[str, Any] | None = None
    new_bundle: PolicyBundle | None = None
    bundle_error: PolicyError | None = None
    if capsule.kind == "control":
        bundle, new_bundle, trust, new_trust = _control(ws, pins, engine)
        pinned_trust_ref = hash_bytes(trust.encode())
        new_trust_ref = hash_bytes(new_trust.encode())
        control = {
            "policy": {"pinned": str(bundle.ref().digest), "new": str(new_bundle.ref().digest)},
            "trust": {"pinned": str(pinned_trust_ref.digest), "new": str(new_trust_ref.digest)},
        }
    else:
        trust = new_trust = workspace_trust(ws)
        try:
            bundle = load_bundle(ws.policy_dir, ws.policy_package)
        except PolicyError as e:  # a deny below, never a pass
            bundle, bundle_error = PolicyBundle({}, ws.policy_package), e
        else:
            check_pins(pins, bundle, trust)

    # 3. the evidence, against the pinned trust roots and the targets' bytes
    evidence = read_evidence(ws.store, capsule, trust, sha256)
    if control is not None:
        want = {"policy": control["policy"]["new"], "trust": control["trust"]["new"]}
        _check_control_evidence(
            ws, evidence, want, new_trust, want["trust"] != control["trust"]["pinned"]
        )

    # 4. guards, then the policy
    _check_guards(capsule, head, state)
    changes = sorted(
        (Change(t.path, state.get(t.path), t.ref) for t in capsule.targets), key=lambda c: c.path
    )
    after = state.apply(changes)
    capsule_ref = hash_bytes(capsule_bytes)
    doc = policy_input(
        capsule_doc=capsule_doc,
        capsule_ref=capsule_ref,
        capsule=capsule,
        attestations=evidence,
        head=head,
        state=state,
        allow_list=ws.allow_list,
        control=control,
    )
    del capsule_doc  # in `doc` now, which `_canonical_by_member` takes apart
    input_bytes = _canonical_by_member(doc)
    _check_readable("policy input", len(input_bytes))
    if bundle_error is not None:
        decision = Decision(
            False,
            (f"policy error: {bundle_error}",),
            "none",
            "none",
            bundle.ref(),
            hash_bytes(input_bytes),
        )
    else:
        decision = decide(engine_from_config(ws.engine_config, engine), bundle, None, input_bytes)
    # What the policy saw of the evidence is in the input: tens of MB of objects at
    # 100,000 targets that the VSA and the entry do not need (issue 15, 500 MiB).
    evidence_refs = [a.ref for a in evidence]
    del evidence
    state_bytes = after.encode()
    key = _runner_key(ws, new_trust)
    vsa = _vsa(
        ws,
        key,
        new_trust,
        head,
        changes,
        evidence=evidence_refs,
        decision=decision,
        known=sha256,
        pinned={
            "policy": new_bundle.encode() if new_bundle is not None else bundle.encode(),
            "trust": new_trust.encode(),
            "state": state_bytes,
            "decided": bundle.encode(),
        },
    )
    state_size = len(state_bytes)
    del state_bytes  # tens of MB at 100,000 paths; the entry is built next
    unsigned = build_entry(
        head,
        capsule=capsule_ref,
        evidence=evidence_refs,
        decision=hash_bytes(decision.encode()),
        policy=new_bundle.ref() if new_bundle is not None else decision.policy,
        trust=hash_bytes(new_trust.encode()),
        vsa=hash_bytes(vsa),
        state_after=after.ref(),
        changes=changes,
    )
    entry = sign_entry(unsigned, key)
    _check_readable("ledger entry", len(entry.data))
    _check_readable("pointer state", state_size)
    return Plan(
        capsule_bytes,
        capsule,
        evidence_refs,
        head,
        state,
        after,
        changes,
        bundle,
        new_trust,
        input_bytes,
        decision,
        entry,
        new_bundle,
        vsa,
    )


def promote(
    ws: Workspace,
    ledger: CommitBackend,
    capsule_arg: str,
    engine: str | None = None,
    dry_run: bool = False,
    capsule_bytes: bytes | None = None,
) -> Outcome:
    """Run the gate. Returns the outcome; never raises for a CasError (it is reported).

    The capsule is `capsule_bytes` when given (a capsule built in-process, such as a
    revert's), else read from `capsule_arg`: a file, or a digest in the store.
    """
    from promote.view import View

    capsule_ref: ObjectRef | None = None
    read = capsule_bytes is not None  # only a capsule that was read makes a report
    decision: Decision | None = None
    changes: list[Change] = []
    guard = contextlib.ExitStack()
    try:
        if not dry_run and isinstance(ws.store, LocalStore):
            # Shared with other writers, exclusive to `cas gc`: nothing this promotion
            # verifies or stores can be collected before the commit names it.
            guard.enter_context(ws.store.collecting())
        try:
            data = capsule_bytes if capsule_bytes is not None else read_capsule(ws, capsule_arg)
        except CapsuleTooLarge:
            read = True  # the file was opened and read: a real attempt, refused
            raise
        read = True
        capsule_ref = hash_bytes(data)
        p = plan(ws, ledger, data, engine)
        decision, changes = p.decision, p.changes
        if dry_run:
            status = "planned" if decision.allow else "denied"
            code = 0 if decision.allow else Denied.exit_code
            return Outcome(
                status, code, list(decision.deny), capsule_ref, decision, None, changes, p.entry
            )
        store = ws.store
        store.put_bytes(p.capsule_bytes)
        store.put_bytes(p.bundle.encode())
        if p.new_bundle is not None:
            store.put_bytes(p.new_bundle.encode())
        store.put_bytes(p.trust.encode())  # the entry pins them: their bytes are in the store
        store.put_bytes(p.input_bytes)
        store.put_bytes(decision.encode())
        crashpoint("promote.decision-stored")
        if not decision.allow:
            raise Denied("denied by policy: " + "; ".join(decision.deny))
        store.put_bytes(p.state_after.encode())
        store.put_bytes(p.vsa)  # the entry names it: a receipt starts here
        crashpoint("promote.state-stored")
        new_head = ledger.commit(p.head, p.entry, p.state_after)
        del p  # what the view and the report need is above; the plan's memory is not
        guard.close()
        # Past the commit point the promotion has happened, whatever follows.
        reasons = list(getattr(ledger, "warnings", []))
        code = 1 if reasons else 0
        try:
            View(ws).sync(ledger)
        except (CasError, OSError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            reasons.append(f"committed, but the view is behind: {why} (run 'promote recover')")
            code = e.exit_code if isinstance(e, CasError) else 1
        try:  # the workspace's checkpoint only grows (ADR 10, "Rollback")
            from promote.rollback import advance

            advance(ws.root, ledger)
        except (CasError, OSError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            reasons.append(f"committed, but the checkpoint was not moved forward: {why}")
            code = max(code, e.exit_code if isinstance(e, CasError) else 1)
        outcome = Outcome("promoted", code, reasons, capsule_ref, decision, new_head, changes)
    except CasError as e:
        status = "denied" if isinstance(e, Denied) else "failed"
        reasons = list(decision.deny) if (decision and not decision.allow) else [str(e)]
        outcome = Outcome(status, e.exit_code, reasons, capsule_ref, decision, None, changes)
    finally:
        guard.close()
    if not dry_run and read:
        try:
            write_report(ws, outcome)
        except OSError as e:
            outcome = attrs.evolve(
                outcome,
                exit_code=outcome.exit_code or 1,
                reasons=[*outcome.reasons, f"cannot write the report: {e.strerror or e}"],
            )
    return outcome


def write_report(ws: Workspace, outcome: Outcome) -> None:
    makedirs_durable(ws.report_path.parent)
    atomic_write(ws.report_path, pretty(outcome.to_dict()))
