"""`promote <capsule>`: the gate, step by step.

1. validate the capsule (schema, then meaning: path hygiene, allow-list, collisions)
2. verify every digest against the store (present, right size, re-hashes)
3. verify the CHECK report (schema, status pass, subjects cover every target)
4. check the compare-and-swap guards, then ask the policy (failing closed)
5. commit: pointer state plus ledger entry, one compare-and-swap
6. materialize the view from the committed state
7. write the report (on every run: promoted, denied or failed)

Steps 1-4 decide without writing; `plan` stops there, which is `--dry-run`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import attrs

from cas._crash import crashpoint
from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import CasError, ConflictError, IntegrityError, ObjectMissing
from cas.fsutil import atomic_write, makedirs_durable, open_error
from cas.local import LocalStore
from promote.canonical import canonical, pretty
from promote.errors import Denied, InvalidCapsule, InvalidDocument, LinkageError, PolicyError
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Entry, Head, build_entry
from promote.model import (
    ABSENT,
    Capsule,
    Change,
    State,
    load_capsule,
    load_check_report,
)
from promote.paths import check_allowed, check_layout, check_path
from promote.policy.engines import Decision, PolicyBundle, decide, engine_from_config, load_bundle
from promote.workspace import Workspace

__all__ = ["Plan", "Outcome", "plan", "promote", "read_capsule"]

REPORT_SCHEMA = "promote-report/v1"
MAX_CAPSULE = 16 << 20


@attrs.frozen
class Plan:
    """Everything decided before anything is written."""

    capsule_bytes: bytes
    capsule: Capsule
    check_bytes: bytes
    head: Head
    state_before: State
    state_after: State
    changes: list[Change]
    bundle: PolicyBundle
    input_bytes: bytes
    decision: Decision
    entry: Entry

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


def read_capsule(ws: Workspace, arg: str) -> bytes:
    """The capsule's bytes, from a file path or from the store by digest.

    Raises:
        UsageError: an unreadable file. LinkageError: a digest the store lacks.
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
        raise InvalidCapsule(f"{arg}: larger than {MAX_CAPSULE} bytes")
    return data


def _verify_ref(ws: Workspace, ref: ObjectRef, what: str) -> None:
    try:
        ws.store.verify(ref)
    except ObjectMissing:
        raise LinkageError(f"{what}: object {ref.digest} is not in the store") from None
    except IntegrityError as e:
        raise LinkageError(f"{what}: {e}") from None


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
    ws: Workspace,
    capsule_doc: Any,
    capsule_ref: ObjectRef,
    check_doc: Any,
    capsule: Capsule,
    head: Head,
    state: State,
) -> dict[str, Any]:
    current = {}
    for t in capsule.targets:
        held = state.get(t.path)
        current[t.path] = held.to_dict() if held else None
    return {
        "capsule": capsule_doc,
        "capsule_digest": str(capsule_ref.digest),
        "check_report": check_doc,
        "current": current,
        "allow_list": list(ws.allow_list),
        "ledger": {"seq": head.seq, "head": str(head.entry) if head.entry else None},
    }


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
    state = load_state(ws.store, head.state)
    check_layout([t.path for t in capsule.targets], state.pointers)

    # 2. every digest: present, of its size, re-hashing to its name
    for t in capsule.targets:
        if t.ref is not None:  # a delete names no object
            _verify_ref(ws, t.ref, f"target {t.path}")
    try:
        check_bytes = ws.store.read_bytes(capsule.check_report, limit=MAX_CAPSULE)
    except IntegrityError as e:
        raise LinkageError(f"CHECK report: {e}") from None

    # 3. the CHECK report: schema, pass, coverage
    try:
        report, check_doc = load_check_report(check_bytes)
    except InvalidDocument as e:
        raise LinkageError(str(e)) from None
    if report.status != "pass":
        raise LinkageError(
            f"CHECK report {capsule.check_report} has status {report.status!r}, not 'pass'"
        )
    uncovered = report.uncovered(t.ref for t in capsule.targets if t.ref is not None)
    if uncovered:
        names = ", ".join(
            f"{t.path} ({t.ref.digest}, {t.ref.size} bytes)"
            for t in capsule.targets
            if t.ref is not None and t.ref in uncovered
        )
        raise LinkageError(f"CHECK report {capsule.check_report} does not cover {names}")

    # 4. guards, then the policy
    _check_guards(capsule, head, state)
    changes = sorted(
        (Change(t.path, state.get(t.path), t.ref) for t in capsule.targets), key=lambda c: c.path
    )
    after = state.apply(changes)
    capsule_ref = hash_bytes(capsule_bytes)
    doc = policy_input(ws, capsule_doc, capsule_ref, check_doc, capsule, head, state)
    input_bytes = canonical(doc)
    try:
        bundle = load_bundle(ws.policy_dir, ws.policy_package)
    except PolicyError as e:
        bundle = PolicyBundle({}, ws.policy_package)
        decision = Decision(
            False, (f"policy error: {e}",), "none", "none", bundle.ref(), hash_bytes(input_bytes)
        )
    else:
        decision = decide(engine_from_config(ws.engine_config, engine), bundle, doc)
    entry = build_entry(
        head,
        capsule=capsule_ref,
        check_report=hash_bytes(check_bytes),
        decision=hash_bytes(decision.encode()),
        policy=decision.policy,
        state_after=after.ref(),
        changes=changes,
    )
    return Plan(
        capsule_bytes,
        capsule,
        check_bytes,
        head,
        state,
        after,
        changes,
        bundle,
        input_bytes,
        decision,
        entry,
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
        data = capsule_bytes if capsule_bytes is not None else read_capsule(ws, capsule_arg)
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
        store.put_bytes(p.input_bytes)
        store.put_bytes(decision.encode())
        crashpoint("promote.decision-stored")
        if not decision.allow:
            raise Denied("denied by policy: " + "; ".join(decision.deny))
        store.put_bytes(p.state_after.encode())
        crashpoint("promote.state-stored")
        new_head = ledger.commit(p.head, p.entry, p.state_after)
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
