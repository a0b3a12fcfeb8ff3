"""`promote revert --to SEQ`: bring back the state after entry SEQ, as a new promotion.

History is never rewritten: a revert is a capsule like any other, and it goes through
the same gate (verify, policy, commit, ledger) as a new entry. The capsule has one
target per path whose pointer differs between the state after entry SEQ and now:

- a path that held an object then points back at it, guarded by `expect` = what it
  holds now (or `absent`);
- a path that did not exist then is deleted (`"delete": true`), guarded by `expect`;
- `base` is the current head, so a revert planned against one head never lands on
  another.

The evidence is what was already recorded (docs/adr/0005-revert.md): the evidence of
the entry that introduced each restored object (of entry SEQ, for a revert that only
deletes). When those entries' capsules are `promote-capsule/v2`, the revert is a v2
capsule naming every attestation they named, in entry order: signatures cannot be
combined, so the attestations are named as they are, and the gate verifies them again
against the trust roots pinned now (a key removed since no longer counts). When they
are all v1, the revert is a v1 capsule: one of their CHECK reports that covers every
restored object, as it is, else a combined report built only from those recorded
reports (status pass, the restored objects as subjects, the checks that passed in
every one of them). Signed and unsigned evidence are never mixed.
"""

from __future__ import annotations

from typing import Any

import attrs

from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import CasError, IntegrityError, UsageError
from promote.canonical import canonical, pretty
from promote.errors import InvalidDocument, LinkageError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import parse_entry
from promote.model import (
    ABSENT,
    MAX_ATTESTATIONS,
    Capsule,
    CheckReport,
    State,
    Target,
    load_capsule,
    load_check_report,
)
from promote.workspace import Workspace

__all__ = ["REVERT_BUILDER", "RevertPlan", "plan_revert", "revert"]

REVERT_BUILDER = "promote revert"
MAX_REPORT = 16 << 20


@attrs.frozen
class RevertPlan:
    """The capsule of a revert and where its evidence comes from; nothing written yet."""

    to: int
    to_entry: Digest
    capsule: Capsule
    capsule_bytes: bytes
    #: A v1 revert's CHECK report (None for a v2 revert, which names attestations).
    check_bytes: bytes | None
    #: True when the CHECK report is a new combined one, not one already recorded.
    combined: bool
    #: (seq, evidence) the revert rests on: each recorded CHECK report (v1), or the
    #: capsule of each entry whose attestations it names (v2).
    sources: tuple[tuple[int, ObjectRef], ...]

    @property
    def check_report(self) -> ObjectRef | None:
        return hash_bytes(self.check_bytes) if self.check_bytes is not None else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "to": self.to,
            "to_entry": str(self.to_entry),
            "capsule": self.capsule.to_dict(),
        }
        if self.check_report is None:
            out["evidence"] = {
                "attestations": [str(d) for d in self.capsule.evidence],
                "sources": [{"seq": s, "capsule": r.to_dict()} for s, r in self.sources],
            }
        else:
            out["check_report"] = {
                **self.check_report.to_dict(),
                "combined": self.combined,
                "sources": [{"seq": s, **r.to_dict()} for s, r in self.sources],
            }
        return out


def _recorded_report(ws: Workspace, seq: int, ref: ObjectRef) -> CheckReport:
    try:
        ws.store.verify(ref)
        report, _ = load_check_report(ws.store.read_bytes(ref.digest, limit=MAX_REPORT))
    except (CasError, InvalidDocument) as e:
        raise LinkageError(f"the CHECK report of entry {seq} ({ref.digest}): {e}") from None
    if report.status != "pass":
        raise LinkageError(f"the CHECK report of entry {seq} ({ref.digest}) did not pass")
    return report


def _recorded_capsule(ws: Workspace, seq: int, ref: ObjectRef) -> Capsule:
    try:
        ws.store.verify(ref)
        capsule, _ = load_capsule(ws.store.read_bytes(ref.digest, limit=MAX_REPORT))
    except (CasError, InvalidDocument) as e:
        raise LinkageError(f"the capsule of entry {seq} ({ref.digest}): {e}") from None
    return capsule


def _combine(reports: list[CheckReport], subjects: list[ObjectRef]) -> CheckReport:
    """A report over `subjects` claiming only the checks that passed in every report."""
    names: list[str] = []
    for name, status in reports[0].checks:
        if status != "pass" or name in names:
            continue
        if all((name, "pass") in r.checks for r in reports[1:]):
            names.append(name)
    return CheckReport("pass", frozenset(subjects), tuple((n, "pass") for n in names))


def plan_revert(ws: Workspace, ledger: CommitBackend, to: int) -> RevertPlan:
    """Build the revert capsule (and, if needed, its combined CHECK report).

    Raises:
        UsageError: no such entry, or nothing to revert.
        IntegrityError: the ledger does not replay to its head.
        LinkageError: a recorded CHECK report is missing, corrupt or does not cover.
    """
    head = ledger.head()
    if to == 0:
        raise UsageError(
            "--to 0 would delete every path, and no recorded CHECK report vouches for"
            " that; write a capsule with delete targets instead"
        )
    if not 1 <= to <= head.seq:
        raise UsageError(f"no ledger entry {to} (the ledger has {head.seq} entries)")
    if to == head.seq:
        raise UsageError(f"entry {to} is the head: nothing to revert")

    pointers: dict[str, ObjectRef] = {}
    introduced: dict[str, int] = {}  # path -> the entry (<= to) that set what it holds
    reports: dict[int, ObjectRef] = {}  # entry seq (<= to) -> its CHECK report
    capsules: dict[int, ObjectRef] = {}  # entry seq (<= to) -> its capsule
    then = State()
    then_introduced: dict[str, int] = {}
    to_entry: Digest | None = None
    for seq in range(1, head.seq + 1):
        entry = parse_entry(ledger.read(seq))
        for c in entry.changes:
            if c.after is None:
                pointers.pop(c.path, None)
                introduced.pop(c.path, None)
            else:
                pointers[c.path] = c.after
                introduced[c.path] = seq
        if seq <= to:
            # a v1 entry names its CHECK report; a v2 entry its evidence, of which a
            # v1 capsule's is that one report
            reports[seq] = entry.evidence[0]
            capsules[seq] = ObjectRef.from_dict(entry.doc["capsule"])
        if seq == to:
            then, then_introduced, to_entry = State(dict(pointers)), dict(introduced), entry.hash
    now = State(pointers)
    if now.ref() != head.state:
        raise IntegrityError(
            "the ledger does not replay to its head state; run 'promote ledger verify'"
        )
    assert to_entry is not None
    paths = sorted(p for p in set(then.pointers) | set(now.pointers) if then.get(p) != now.get(p))
    if not paths:
        raise UsageError(f"nothing to revert: every path holds what it held after entry {to}")

    targets = []
    restored: dict[str, ObjectRef] = {}
    for p in paths:
        held = now.get(p)
        expect: Digest | str = held.digest if held else ABSENT
        want = then.get(p)
        targets.append(Target(p, want, expect))
        if want is not None:
            restored[p] = want

    # the evidence: the recorded reports of the entries that introduced each object
    by_seq: dict[int, list[ObjectRef]] = {}
    for p, ref in restored.items():
        by_seq.setdefault(then_introduced[p], []).append(ref)
    if not by_seq:  # deletes only: the evidence of the entry whose state comes back
        by_seq[to] = []
    recorded = {seq: _recorded_capsule(ws, seq, capsules[seq]) for seq in sorted(by_seq)}
    meta = {"builder": REVERT_BUILDER, "source_revision": f"ledger entry {to} {to_entry}"}
    versions = {rc.version for rc in recorded.values()}
    sources: tuple[tuple[int, ObjectRef], ...]
    if versions == {2}:
        evidence: list[Digest] = []
        for rc in recorded.values():
            evidence.extend(d for d in rc.evidence if d not in evidence)
        if len(evidence) > MAX_ATTESTATIONS:
            raise UsageError(
                f"the entries this revert rests on name {len(evidence)} attestations, more"
                f" than a capsule may ({MAX_ATTESTATIONS}); revert in steps"
            )
        capsule = Capsule(tuple(targets), tuple(evidence), head.base, meta)
        capsule_bytes = pretty(capsule.to_dict())
        load_capsule(capsule_bytes)
        sources = tuple((seq, capsules[seq]) for seq in recorded)
        return RevertPlan(to, to_entry, capsule, capsule_bytes, None, False, sources)
    if versions != {1}:
        raise UsageError(
            "the entries this revert rests on mix signed (promote-capsule/v2) and unsigned"
            " (v1) evidence, which one capsule cannot name; write the capsule by hand"
        )
    loaded: list[tuple[int, ObjectRef, CheckReport]] = []
    for seq in sorted(by_seq):
        report = _recorded_report(ws, seq, reports[seq])
        missing = report.uncovered(by_seq[seq])
        if missing:
            raise LinkageError(
                f"the CHECK report of entry {seq} ({reports[seq].digest}) does not cover"
                f" {', '.join(str(r.digest) for r in missing)}, which that entry promoted"
            )
        loaded.append((seq, reports[seq], report))
    subjects = sorted(set(restored.values()))
    single = next((x for x in reversed(loaded) if not x[2].uncovered(subjects)), None)
    if single is not None:
        seq, ref, _ = single
        check_bytes = ws.store.read_bytes(ref.digest, limit=MAX_REPORT)
        combined, sources = False, ((seq, ref),)
    else:
        report = _combine([r for _, _, r in loaded], subjects)
        check_bytes = canonical(report.to_dict())
        combined, sources = True, tuple((s, r) for s, r, _ in loaded)

    capsule = Capsule(tuple(targets), (hash_bytes(check_bytes).digest,), head.base, meta, version=1)
    capsule_bytes = pretty(capsule.to_dict())
    load_capsule(capsule_bytes)  # what the gate will check first: fail here, not later
    return RevertPlan(to, to_entry, capsule, capsule_bytes, check_bytes, combined, sources)


def revert(
    ws: Workspace,
    ledger: CommitBackend,
    to: int,
    engine: str | None = None,
    dry_run: bool = False,
) -> tuple[RevertPlan, Any]:
    """Plan the revert, then run it through the gate (steps 1-4 only with `dry_run`).

    A combined CHECK report is put into the store first, even for a dry run: the gate
    reads evidence only from the store. It is an unreferenced object until a revert
    commits, and `cas gc` collects it.

    Returns the plan and the gate's `Outcome`.
    """
    from promote.gate import promote

    p = plan_revert(ws, ledger, to)
    if p.combined and p.check_bytes is not None:
        ws.store.put_bytes(p.check_bytes)
    outcome = promote(ws, ledger, "revert", engine, dry_run, capsule_bytes=p.capsule_bytes)
    return p, outcome
