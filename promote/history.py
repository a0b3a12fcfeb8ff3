"""History: what the ledger says happened, and where things stand now.

    promote log      one line per promotion: seq, entry hash, changes, capsule meta
    promote show N   one entry with its capsule, CHECK report and decision
    promote status   the head, the view, and anything a crash left behind

The ledger is read only through the `CommitBackend` API (`head`, `read`), so all of
this works the same on a file ledger and on PostgreSQL. The documents an entry names
(capsule, CHECK report, decision) come from the store, verified; one that is missing
or corrupt is reported as such, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from cas.backend import ObjectStore
from cas.digest import Digest, ObjectRef
from cas.errors import CasError, ObjectMissing, UsageError
from promote.canonical import MAX_DOCUMENT, load_json
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Entry, Head, parse_entry
from promote.ledger.files import FileLedger
from promote.model import Change
from promote.workspace import Workspace

__all__ = [
    "LogRecord",
    "Shown",
    "Status",
    "change_summary",
    "iter_log",
    "read_doc",
    "resolve_seq",
    "show",
    "status",
]

#: Largest capsule, report or decision document `show` reads back from the store.
MAX_DOC = MAX_DOCUMENT


def _short(digest: Digest) -> str:
    return f"{digest.algorithm}:{digest.hex[:12]}"


def change_summary(change: Change) -> str:
    """`path -> blake3:<12 hex>` (or `-> absent`): what one change did, in brief."""
    return f"{change.path} -> {_short(change.after.digest) if change.after else 'absent'}"


def read_doc(store: ObjectStore, ref: ObjectRef, what: str) -> tuple[Any, str | None]:
    """The parsed document `ref` names, read verified, or (None, why it cannot be had)."""
    try:
        store.verify(ref)
        return load_json(store.read_bytes(ref.digest, limit=MAX_DOC), what), None
    except (CasError, InvalidDocument) as e:
        return None, f"{what} {ref.digest}: {e}"


# -- log ---------------------------------------------------------------------------


@attrs.frozen
class LogRecord:
    """One line of `promote log`."""

    seq: int
    entry: Digest
    capsule: ObjectRef
    changes: list[Change]
    #: The capsule's `meta`; None when the capsule cannot be read from the store.
    meta: dict[str, str] | None
    #: The entry's parsed document (for readers that show more than the line).
    doc: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "entry": str(self.entry),
            "capsule": str(self.capsule.digest),
            "changes": [c.to_dict() for c in self.changes],
            "meta": self.meta,
        }

    def line(self) -> str:
        changes = ", ".join(change_summary(c) for c in self.changes) or "(no changes)"
        if self.meta is None:
            meta = "(capsule not in the store)"
        else:
            meta = " ".join(f"{k}={v}" for k, v in sorted(self.meta.items()))
        return "  ".join(x for x in (str(self.seq), str(self.entry), changes, meta) if x)


def _entry(ledger: CommitBackend, seq: int) -> Entry:
    return parse_entry(ledger.read(seq))


def iter_log(
    ws: Workspace,
    ledger: CommitBackend,
    limit: int | None = None,
    reverse: bool = False,
    start: int | None = None,
) -> Iterator[LogRecord]:
    """The promotions, newest first (oldest first with `reverse`), at most `limit`,
    from entry `start` on (default: the head, or entry 1 with `reverse`).

    Reads only the entries it yields, by seq: a page of a long ledger costs a page.

    Raises:
        IntegrityError: an entry that is missing or not a well-formed canonical entry.
    """
    head = ledger.head()
    if reverse:
        seqs = range(max(start or 1, 1), head.seq + 1)
    else:
        seqs = range(min(head.seq if start is None else start, head.seq), 0, -1)
    if limit is not None:
        seqs = seqs[:limit]
    for seq in seqs:
        entry = _entry(ledger, seq)
        capsule = ObjectRef.from_dict(entry.doc["capsule"])
        doc, _ = read_doc(ws.store, capsule, "capsule")
        meta = None
        if isinstance(doc, dict):
            raw = doc.get("meta", {})
            meta = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        yield LogRecord(seq, entry.hash, capsule, entry.changes, meta, entry.doc)


# -- show --------------------------------------------------------------------------


def resolve_seq(ledger: CommitBackend, text: str) -> int:
    """`N`, `head`, or `-N` (N entries before the head) as a seq number of the ledger.

    Raises:
        UsageError: not a number, or no such entry.
    """
    head = ledger.head().seq
    t = text.strip().lower()
    try:
        seq = head if t == "head" else int(t)
    except ValueError:
        raise UsageError(f"{text!r}: want an entry number, 'head' or -N") from None
    if seq < 0:
        seq = head + seq
    if not 1 <= seq <= head:
        raise UsageError(f"no ledger entry {text} (the ledger has {head} entries)")
    return seq


@attrs.frozen
class Shown:
    """One entry and the documents it names (None where the store lacks one)."""

    entry: Entry
    capsule: Any
    #: The documents of the entry's evidence, in its order: the attestations (DSSE
    #: envelopes) of a v2 entry, the one CHECK report of a v1 entry.
    evidence: list[Any]
    decision: Any
    #: What could not be read from the store, one line each.
    missing: list[str]

    def to_dict(self) -> dict[str, Any]:
        doc = self.entry.doc
        return {
            "seq": self.entry.seq,
            "entry": str(self.entry.hash),
            "document": dict(doc),
            "capsule": {"ref": doc["capsule"], "document": self.capsule},
            "evidence": [
                {"ref": r.to_dict(), "document": d}
                for r, d in zip(self.entry.evidence, self.evidence, strict=True)
            ],
            "decision": {"ref": doc["decision"], "document": self.decision},
            "missing": self.missing,
        }

    def lines(self) -> list[str]:
        doc = self.entry.doc
        out = [
            f"entry     {self.entry.seq}  {self.entry.hash}",
            f"prev      {doc['prev'] or '(none: first entry)'}",
            f"state     {doc['state_before']['digest']} -> {doc['state_after']['digest']}",
            "changes",
        ]
        for c in self.entry.changes:
            before = str(c.before.digest) if c.before else "absent"
            after = str(c.after.digest) if c.after else "absent"
            out.append(f"  {c.path}: {before} -> {after}")
        out.append(f"capsule   {doc['capsule']['digest']}")
        if isinstance(self.capsule, dict):
            meta = self.capsule.get("meta") or {}
            for k in sorted(meta):
                out.append(f"  {k}: {meta[k]}")
            if "base" in self.capsule:
                out.append(f"  base: {self.capsule['base']}")
        d = self.decision
        out.append(f"decision  {doc['decision']['digest']}")
        if isinstance(d, dict):
            engine = d.get("engine") or {}
            out.append(
                f"  {'allow' if d.get('allow') else 'deny'}"
                f" ({engine.get('name')} {engine.get('version')})"
            )
            out.append(f"  policy: {doc['policy']['digest']}")
            if isinstance(d.get("input"), dict):
                out.append(f"  input: {d['input'].get('digest')}")
            for reason in d.get("deny") or []:
                out.append(f"  - {reason}")
        for ref, r in zip(self.entry.evidence, self.evidence, strict=True):
            out.append(f"evidence  {ref.digest}")
            if isinstance(r, dict) and "payloadType" in r:
                out.append(f"  attestation ({r.get('payloadType')})")
            elif isinstance(r, dict):
                out.append(f"  status: {r.get('status')}")
                for s in r.get("subjects") or []:
                    out.append(f"  subject: {s.get('digest')} ({s.get('size')} bytes)")
                for c in r.get("checks") or []:
                    out.append(f"  check: {c.get('name')} {c.get('status')}")
        for m in self.missing:
            out.append(f"missing   {m}")
        return out


def show(ws: Workspace, ledger: CommitBackend, seq: int) -> Shown:
    """Entry `seq` with its capsule, evidence and decision read from the store.

    Raises:
        IntegrityError: the entry itself is missing or malformed.
    """
    entry = _entry(ledger, seq)
    missing: list[str] = []

    def read(ref: ObjectRef, what: str) -> Any:
        doc, why = read_doc(ws.store, ref, what)
        if why:
            missing.append(why)
        return doc

    capsule = read(ObjectRef.from_dict(entry.doc["capsule"]), "capsule")
    what = "attestation" if entry.version == 2 else "CHECK report"
    evidence = [read(ref, what) for ref in entry.evidence]
    decision = read(ObjectRef.from_dict(entry.doc["decision"]), "decision")
    return Shown(entry, capsule, evidence, decision, missing)


# -- status ------------------------------------------------------------------------


@attrs.frozen
class Status:
    """Where things stand: the head, the view, and what recovery would do."""

    head: Head
    view_mode: str
    #: The state digest the view shows (None: nothing, or a switch is pending).
    view_state: Digest | None
    #: The seq of the newest entry whose state the view shows (0: the empty state).
    view_seq: int | None
    #: How the view differs from the head, one line each.
    view_problems: list[str]
    #: What `promote recover` would do, one line each.
    recovery: list[str]
    #: Stray temp files in the store, which `cas gc` removes.
    stray: list[str]
    #: What the cheap checks found (`cheap_problems`), one line each.
    problems: list[str] = attrs.Factory(list)

    @property
    def clean(self) -> bool:
        return not (self.view_problems or self.recovery or self.stray or self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head.to_dict(),
            "view": {
                "mode": self.view_mode,
                "state": str(self.view_state) if self.view_state else None,
                "seq": self.view_seq,
                "problems": self.view_problems,
            },
            "recovery": self.recovery,
            "stray": self.stray,
            "problems": self.problems,
            "clean": self.clean,
        }

    def lines(self) -> list[str]:
        h = self.head
        out = [
            f"head      entry {h.seq}  {h.entry}" if h.entry else "head      (empty ledger)",
            f"state     {h.state.digest}",
        ]
        if self.view_state is None:
            shows = "nothing"
        elif self.view_seq is None:
            shows = f"{self.view_state} (a state no entry left)"
        elif self.view_seq == h.seq:
            shows = f"entry {self.view_seq} (the head)"
        else:
            shows = f"entry {self.view_seq}, not the head"
        out.append(f"view      {self.view_mode}, shows {shows}")
        out += [f"  {p}" for p in self.view_problems]
        out += [f"recover   {r}" for r in self.recovery]
        out += [f"stray     {s}" for s in self.stray]
        out += [f"problem   {p}" for p in self.problems]
        if self.problems:
            n = len(self.problems)
            out.append(f"{n} problem{'' if n == 1 else 's'}: run `promote verify`")
        elif self.clean:
            out.append("clean: the view shows the head and nothing awaits recovery")
        return out


def _seq_of_state(ledger: CommitBackend, head: Head, digest: Digest) -> int | None:
    """The newest entry that left the state `digest` (0 for the empty state)."""
    if head.state.digest == digest:
        return head.seq
    for seq in range(head.seq, 0, -1):
        entry = _entry(ledger, seq)
        if entry.state_after.digest == digest:
            return seq
    from promote.ledger.entry import EMPTY_STATE

    return 0 if digest == EMPTY_STATE.ref().digest else None


def _shown(ws: Workspace, view: Any) -> tuple[Digest | None, bool]:
    """The state digest the view shows, and whether a copy-mode switch is pending."""
    if ws.view_mode == "symlink":
        shown = view.shown()
        try:
            return (Digest.parse(f"blake3:{shown}") if shown else None), False
        except CasError:
            return None, False  # .promote/current is not a link promote made
    try:
        doc = load_json(view.record.read_bytes(), "view record")
        return ObjectRef.from_dict(doc["state"]).digest, bool(doc.get("pending"))
    except FileNotFoundError:
        return None, False
    except Exception:
        return None, True


def status(ws: Workspace, ledger: CommitBackend) -> Status:
    """The head, what the view shows and how it differs, and what recovery is due."""
    from cas.local import LocalStore
    from promote.view import View

    recovery: list[str] = []
    # The FileLedger's own crash debris; other backends commit transactionally.
    if isinstance(ledger, FileLedger) and ledger.entries_dir.is_dir():
        for p in sorted(ledger.entries_dir.glob(".entry-*.tmp")):
            recovery.append(f"interrupted entry temp {p.name} (promote recover removes it)")
    head = ledger.head()
    if isinstance(ledger, FileLedger):
        cached = ledger._read_head_cache()
        if cached != head:
            recovery.append(
                f"ledger HEAD names entry {cached.seq}, the ledger ends at {head.seq}"
                " (promote recover rolls it forward)"
            )
    view = View(ws)
    view_state, pending = _shown(ws, view)
    view_seq = _seq_of_state(ledger, head, view_state) if view_state else None
    problems: list[str]
    if ws.view_mode == "symlink" and not isinstance(ws.store, LocalStore):
        problems = ["cannot check the view: symlink views need a local store"]
    else:
        try:
            state = load_state(ws.store, head.state)
            problems = [
                f"{p.kind}: {p.location}: {p.detail}" for p in view.problems(state, head.state)
            ]
        except CasError as e:
            problems = [f"cannot check the view: {e}"]
    if pending:
        problems.insert(0, "view-pending: a switch of the copy-mode view was interrupted")
    if pending or view_state != head.state.digest:
        recovery.append("the view does not show the head (promote recover switches it)")
    stray: list[str] = []
    if isinstance(ws.store, LocalStore):
        stray = [f"{p.name} (cas gc removes it)" for p in ws.store.stray_temps()]
    return Status(
        head,
        ws.view_mode,
        view_state,
        view_seq,
        problems,
        recovery,
        stray,
        cheap_problems(ws, ledger),
    )


#: `status` re-hashes the objects of the head state up to this size (larger ones: size).
CHEAP_REHASH = 1 << 20


def cheap_problems(ws: Workspace, ledger: CommitBackend) -> list[str]:
    """The checks `promote status` can afford: the ledger chain (entries re-hashed,
    linked and replayed to HEAD, no store), and the objects of the head state, present
    and of their size, those up to `CHEAP_REHASH` bytes re-hashed. `promote verify`
    checks everything."""
    from promote.ci import verify_chain

    found, state = verify_chain(ledger)
    out = [f"{p.kind}: {p.location}: {p.detail}" for p in found]
    if state is None:
        return out
    for path, ref in sorted(state.pointers.items()):
        try:
            if ws.store.size(ref.digest) != ref.size:
                out.append(f"mismatch: {path}: {ref.digest} is not of {ref.size} bytes")
            elif ref.size <= CHEAP_REHASH:
                ws.store.verify(ref)
        except CasError as e:
            out.append(f"{'missing' if isinstance(e, ObjectMissing) else 'mismatch'}: {path}: {e}")
    return out
