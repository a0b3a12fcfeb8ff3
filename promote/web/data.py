"""What the web view shows, as plain JSON-able dicts: one function per page.

The HTML pages and the JSON API render the same dicts, so they cannot disagree. The
ledger is read only through `CommitBackend` (`head`, `read`) and `promote.history`
(`iter_log`, `show`, `read_doc`); the documents an entry names come from the store,
verified on read.

Entries and capsules are changing format (v1 -> v2 with signed attestations, ADR 10),
so every field of an entry or a document is read defensively (`.get`): a field the
view does not know is ignored, one it expects and does not find is shown as absent.

Signers are *verified* (`promote.web.signers`): the entry's runner signature, each
attestation's signers and the roles they meet, and the VSA, against the trust roots
pinned for the entry, cached per entry digest; the timeline verifies only the entries
on its page (their CHECK signers). A v1 entry's signers are shown as recorded
(`"verified": null`).
"""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from cas.digest import Digest, ObjectRef
from cas.errors import CasError
from promote.history import LogRecord, iter_log, read_doc, show
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Entry, Head, parse_entry
from promote.paths import why_bad
from promote.workspace import Workspace

__all__ = [
    "MAX_PER",
    "PER",
    "BadRequest",
    "Index",
    "NotFound",
    "Reader",
    "Signer",
    "describe_evidence",
    "entry_signers",
    "parse_digest",
    "parse_int",
    "parse_path",
    "parse_seq",
]

#: The kinds of problem re-justification reports (`promote.justify.justify_ledger`).
SIGNATURE_KINDS = ("unjustified", "unsigned")
#: Entries whose verified signers are kept (an entry never changes).
SIGNER_CACHE = 4096
#: Entries per page, by default and at most.
PER = 50
MAX_PER = 200
#: The longest search query, path or digest parameter accepted (longer: 400).
MAX_PARAM = 4096
_SEQ = re.compile(r"[1-9][0-9]{0,17}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BadRequest(Exception):
    """A malformed parameter: 400, with this one-line message."""


class NotFound(Exception):
    """A well-formed parameter naming nothing: 404, with this one-line message."""


# -- parameters ----------------------------------------------------------------------


def parse_seq(text: str) -> int:
    """An entry number, `1` and up, in plain decimal.

    Raises:
        BadRequest: anything else (a sign, leading zeros, letters, too long).
    """
    if not _SEQ.fullmatch(text):
        raise BadRequest(f"want an entry number (1, 2, ...), not {text[:80]!r}")
    return int(text)


def parse_digest(text: str) -> Digest:
    """`blake3:<64 lowercase hex>`, or the 64 hex digits alone.

    Raises:
        BadRequest: anything else.
    """
    t = text.strip()
    if _HEX64.fullmatch(t):
        t = "blake3:" + t
    try:
        return Digest.parse(t)
    except (CasError, ValueError, TypeError):
        raise BadRequest(f"want a digest blake3:<64 hex digits>, not {text[:80]!r}") from None


def parse_path(text: str) -> str:
    """A clean relative path, as the gate accepts for a target.

    Raises:
        BadRequest: an absolute, dotted, empty, overlong or otherwise unclean path.
    """
    if len(text) > MAX_PARAM:
        raise BadRequest("path too long")
    why = why_bad(text)
    if why:
        raise BadRequest(f"bad path {text[:80]!r}: {why}")
    return text


def parse_int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[0-9]{1,18}", text) or not low <= int(text) <= high:
        raise BadRequest(f"{name}: want a number from {low} to {high}, not {text[:40]!r}")
    return int(text)


# -- pieces --------------------------------------------------------------------------


def _ref(value: object) -> dict[str, Any] | None:
    """A `{digest, size}` ref as the entry records it, or None when it is not one."""
    try:
        return ObjectRef.from_dict(value).to_dict()
    except (CasError, ValueError, TypeError, KeyError, AttributeError):
        return None


def _change(c: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": c.get("path"), "from": _ref(c.get("from")), "to": _ref(c.get("to"))}


@attrs.frozen
class Signer:
    """A signature an entry or an envelope records: who, and whether it was checked.

    `verified` is None where this view has not checked the signature (today: always);
    True or False, with `signer` the trust roots' name for the key, once entries or
    receipts carry verified signers.
    """

    role: str
    keyid: str | None
    signer: str | None = None
    verified: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "keyid": self.keyid,
            "signer": self.signer,
            "verified": self.verified,
        }


def entry_signers(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The runner signature an entry records (v2: `signature`); none for a v1 entry."""
    sig = doc.get("signature")
    if isinstance(sig, Mapping):
        kid = sig.get("keyid")
        return [Signer("runner", kid if isinstance(kid, str) else None).to_dict()]
    return []


def _meta(capsule: object) -> dict[str, str] | None:
    if not isinstance(capsule, Mapping):
        return None
    raw = capsule.get("meta") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def _row(r: LogRecord, doc: Mapping[str, Any]) -> dict[str, Any]:
    """One line of the timeline: what `promote log` shows, plus schema and signers."""
    meta = r.meta
    return {
        "seq": r.seq,
        "entry": str(r.entry),
        "schema": doc.get("schema"),
        "capsule": str(r.capsule.digest),
        "changes": [_change(c.to_dict()) for c in r.changes],
        "meta": meta,
        "builder": (meta or {}).get("builder"),
        "source_revision": (meta or {}).get("source_revision"),
        "signers": entry_signers(doc),
    }


def _evidence_refs(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What an entry names as its evidence: v2's `evidence` list, v1's `check_report`."""
    raw = doc.get("evidence")
    if isinstance(raw, list):
        refs = [_ref(r) for r in raw]
    else:
        refs = [_ref(doc.get("check_report"))] if "check_report" in doc else []
    return [r for r in refs if r is not None]


def describe_evidence(doc: Any, why: str | None) -> dict[str, Any]:
    """One evidence document, whatever it is: a DSSE envelope carrying an in-toto
    statement (its predicate type, subjects, recorded signatures), a check-report/v1,
    or something this view does not know."""
    from promote.attest.dsse import Envelope
    from promote.attest.statement import statement_of

    out: dict[str, Any] = {"kind": "unknown", "problem": why}
    if doc is None:
        out["kind"] = "missing"
        return out
    if isinstance(doc, Mapping) and doc.get("schema") == "check-report/v1":
        out.update(
            kind="check-report",
            predicate_type=None,
            status=doc.get("status"),
            checks=[c for c in doc.get("checks") or [] if isinstance(c, Mapping)],
            subjects=[
                {"name": None, "digest": s.get("digest"), "size": s.get("size")}
                for s in doc.get("subjects") or []
                if isinstance(s, Mapping)
            ],
            signers=[],
        )
        return out
    try:
        envelope = Envelope.from_dict(doc)
    except CasError as e:
        out["problem"] = str(e)
        return out
    out.update(
        kind="attestation",
        payload_type=envelope.payload_type,
        signers=[Signer("signer", s.keyid).to_dict() for s in envelope.signatures],
    )
    try:
        st = statement_of(envelope)
    except CasError as e:
        out["problem"] = str(e)
        return out
    pred = st.predicate
    out.update(
        predicate_type=st.predicate_type,
        status=pred.get("status") if isinstance(pred.get("status"), str) else None,
        checks=[c for c in pred.get("checks") or [] if isinstance(c, Mapping)],
        subjects=[{"name": s.name, "digest": s.digests, "size": None} for s in st.subjects],
    )
    return out


# -- the index: paths and digests ----------------------------------------------------


class Index:
    """Which entries changed a path, and which entries name a digest.

    Built on first use, by reading the ledger oldest first, and extended when the head
    has moved (entries never change, so what was read stays true; a head that went
    back, a ledger replaced, rebuilds it). The timeline does not use it: only the path
    history and the search, which must see every entry.

    Digests are keyed by their first 12 bytes (a page of results re-reads the entries,
    which checks the whole digest), so 100,000 entries cost tens of MB, not hundreds.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.head: Head | None = None
        self.paths: dict[str, list[int]] = {}
        self.digests: dict[bytes, int | list[int]] = {}

    def _add_digest(self, digest: object, seq: int) -> None:
        if not isinstance(digest, str) or not digest.startswith("blake3:"):
            return
        try:
            key = bytes.fromhex(digest[7:])[:12]
        except ValueError:
            return
        have = self.digests.get(key)
        if have is None:
            self.digests[key] = seq
        elif isinstance(have, int):
            if have != seq:
                self.digests[key] = [have, seq]
        elif have[-1] != seq:
            have.append(seq)

    def _add(self, entry: Entry) -> None:
        seq, doc = entry.seq, entry.doc
        self._add_digest(str(entry.hash), seq)
        for key in ("capsule", "check_report", "decision", "policy", "trust", "state_after"):
            ref = doc.get(key)
            if isinstance(ref, Mapping):
                self._add_digest(ref.get("digest"), seq)
        for ref in doc.get("evidence") or []:
            if isinstance(ref, Mapping):
                self._add_digest(ref.get("digest"), seq)
        for c in doc.get("changes") or []:
            if not isinstance(c, Mapping):
                continue
            path = c.get("path")
            if isinstance(path, str):
                seqs = self.paths.setdefault(path, [])
                if not seqs or seqs[-1] != seq:
                    seqs.append(seq)
            for side in ("from", "to"):
                ref = c.get(side)
                if isinstance(ref, Mapping):
                    self._add_digest(ref.get("digest"), seq)

    def update(self, ledger: CommitBackend) -> Head:
        """Bring the index up to the ledger's head; the head it now reflects."""
        with self._lock:
            head = ledger.head()
            if self.head is not None and (
                head.seq < self.head.seq
                or (
                    self.head.seq
                    and parse_entry(ledger.read(self.head.seq)).hash != self.head.entry
                )
            ):
                self._reset()  # not the ledger it was built from
            start = self.head.seq + 1 if self.head else 1
            for seq in range(start, head.seq + 1):
                self._add(parse_entry(ledger.read(seq)))
            self.head = head
            return head

    def seqs_of_path(self, path: str) -> list[int]:
        return list(self.paths.get(path, ()))

    def seqs_of_digest(self, digest: Digest) -> list[int]:
        have = self.digests.get(bytes.fromhex(digest.hex)[:12])
        if have is None:
            return []
        return [have] if isinstance(have, int) else list(have)

    def paths_under(self, prefix: str, limit: int) -> list[str]:
        return sorted(p for p in self.paths if p.startswith(prefix))[:limit]


def _roles(doc: Mapping[str, Any], entry_hash: Digest, digest: Digest) -> list[str]:
    """What `digest` is to the entry: the entry itself, its capsule, a change's target..."""
    d = str(digest)
    out = []
    if entry_hash == digest:
        out.append("entry")
    for key in ("capsule", "check_report", "decision", "policy", "trust", "state_after"):
        ref = doc.get(key)
        if isinstance(ref, Mapping) and ref.get("digest") == d:
            out.append(key.replace("_", " "))
    for ref in doc.get("evidence") or []:
        if isinstance(ref, Mapping) and ref.get("digest") == d:
            out.append("evidence")
    for c in doc.get("changes") or []:
        if not isinstance(c, Mapping):
            continue
        for side, word in (("to", "new content of"), ("from", "old content of")):
            ref = c.get(side)
            if isinstance(ref, Mapping) and ref.get("digest") == d:
                out.append(f"{word} {c.get('path')}")
    return out


# -- verification --------------------------------------------------------------------


@attrs.define
class _Verified:
    head: Head
    checked_at: str
    problems: list[dict[str, Any]]


# -- the reader ----------------------------------------------------------------------


class Reader:
    """One workspace, read for the web: one method per page, each a JSON-able dict.

    A commit backend per thread (a PostgreSQL ledger holds one connection), one index
    and one verification result shared by all, each under its own lock.
    """

    def __init__(
        self,
        ws: Workspace,
        open_ledger: Callable[[Workspace], CommitBackend],
        serve_objects: bool = False,
    ) -> None:
        self.ws = ws
        self._open = open_ledger
        self.serve_objects = serve_objects
        self._local = threading.local()
        self._ledgers: list[CommitBackend] = []
        self._ledgers_lock = threading.Lock()
        self.index = Index()
        self._verify_lock = threading.Lock()
        self._verified: _Verified | None = None
        self.store = ws.store
        #: Verified signers by (entry digest, with the VSA): an entry never changes.
        self._signers: dict[tuple[str, bool], dict[str, Any]] = {}
        self._signers_lock = threading.Lock()
        self._trust_cache: dict[str, Any] = {}

    @property
    def ledger(self) -> CommitBackend:
        led: CommitBackend | None = getattr(self._local, "ledger", None)
        if led is None:
            led = self._open(self.ws)
            self._local.ledger = led
            with self._ledgers_lock:
                self._ledgers.append(led)
        return led

    def close(self) -> None:
        with self._ledgers_lock:
            for led in self._ledgers:
                close = getattr(led, "close", None)
                if close is not None:
                    close()
            self._ledgers.clear()

    def head(self) -> dict[str, Any]:
        return self.ledger.head().to_dict()

    def verified_signers(self, entry: Entry, *, vsa: bool) -> dict[str, Any]:
        """`promote.web.signers.verify_entry`, cached per entry digest."""
        from promote.web.signers import verify_entry

        key = (str(entry.hash), vsa)
        with self._signers_lock:
            hit = self._signers.get(key)
        if hit is not None:
            return hit
        with self._signers_lock:
            trust_cache = dict(self._trust_cache)
        result = verify_entry(self.ledger, self.store, entry, vsa=vsa, trust_cache=trust_cache)
        with self._signers_lock:
            self._trust_cache = trust_cache
            if len(self._signers) >= SIGNER_CACHE:
                self._signers.pop(next(iter(self._signers)))
            self._signers[key] = result
        return result

    def _check_signers(self, r: LogRecord) -> list[dict[str, Any]]:
        """The verified CHECK signers of a timeline row's entry (cached)."""
        from promote.web.signers import check_signers

        with self._signers_lock:
            hit = self._signers.get((str(r.entry), False))
        if hit is None:
            try:
                entry = parse_entry(self.ledger.read(r.seq))
            except CasError:
                return []
            if entry.hash != r.entry:
                return []
            hit = self.verified_signers(entry, vsa=False)
        return check_signers(hit)

    # timeline ------------------------------------------------------------------

    def timeline(self, start: int | None, per: int) -> dict[str, Any]:
        """A page of the timeline, newest first, from entry `start` (default: the head).

        Reads `per` entries by seq, and their capsules: never the whole ledger.
        """
        ledger = self.ledger
        head = ledger.head()
        if start is not None and start > head.seq:
            if head.seq == 0:
                raise NotFound("the ledger is empty")
            raise NotFound(f"no ledger entry {start} (the ledger has {head.seq} entries)")
        top = head.seq if start is None else start
        rows = []
        for r in iter_log(self.ws, ledger, per, start=top):
            row = _row(r, r_doc(r))
            if r_doc(r).get("signature") is not None:
                row["signers"] = self._check_signers(r)
            rows.append(row)
        bottom = top - len(rows) + 1
        return {
            "head": head.to_dict(),
            "from": top if head.seq else None,
            "per": per,
            "entries": rows,
            "newer": min(top + per, head.seq) if top < head.seq else None,
            "older": bottom - 1 if bottom > 1 else None,
        }

    # entry ---------------------------------------------------------------------

    def _seq(self, seq: int) -> Head:
        head = self.ledger.head()
        if not 1 <= seq <= head.seq:
            raise NotFound(f"no ledger entry {seq} (the ledger has {head.seq} entries)")
        return head

    def entry(self, seq: int) -> dict[str, Any]:
        """One entry: its changes, decision and reasons, evidence, signers, downloads."""
        head = self._seq(seq)
        shown = show(self.ws, self.ledger, seq)
        doc = shown.entry.doc
        capsule = shown.capsule if isinstance(shown.capsule, Mapping) else None
        decision = shown.decision if isinstance(shown.decision, Mapping) else None
        evidence = []
        missing = list(shown.missing)
        verified = self.verified_signers(shown.entry, vsa=True)
        by_digest = {a["digest"]: a for a in verified["attestations"]}
        for ref in _evidence_refs(doc):
            edoc, why = read_doc(self.store, ObjectRef.from_dict(ref), "evidence")
            item = describe_evidence(edoc, why)
            item["ref"] = ref
            checked = by_digest.get(ref["digest"])
            if checked is not None and item["kind"] == "attestation":
                item["signers"] = checked["signers"]
                item["roles"] = checked["roles"]
                item["verify_problem"] = checked["problem"]
            evidence.append(item)
            if why and why not in missing:
                missing.append(why)
        engine = (decision or {}).get("engine")
        deny = (decision or {}).get("deny")
        dinput = (decision or {}).get("input")
        return {
            "seq": seq,
            "entry": str(shown.entry.hash),
            "head": head.to_dict(),
            "schema": doc.get("schema"),
            "prev": doc.get("prev"),
            "state_before": _ref(doc.get("state_before")),
            "state_after": _ref(doc.get("state_after")),
            "changes": [_change(c) for c in doc.get("changes") or [] if isinstance(c, Mapping)],
            "capsule": {
                "ref": _ref(doc.get("capsule")),
                "meta": _meta(capsule),
                "base": (capsule or {}).get("base"),
                "kind": (capsule or {}).get("kind", "release") if capsule else None,
                "schema": (capsule or {}).get("schema"),
            },
            "decision": {
                "ref": _ref(doc.get("decision")),
                "allow": (decision or {}).get("allow") if decision else None,
                "reasons": [str(d) for d in deny] if isinstance(deny, list) else [],
                "engine": dict(engine) if isinstance(engine, Mapping) else None,
                "input": _ref(dinput) if isinstance(dinput, Mapping) else None,
            },
            "policy": _ref(doc.get("policy")),
            "trust": _ref(doc.get("trust")),
            "evidence": evidence,
            "signers": [verified["runner"]] if verified["runner"] else entry_signers(doc),
            "verified": verified,
            # what issue 16 adds: a VSA named by the entry, and a receipt
            "vsa": _ref(doc.get("vsa")),
            "receipt": f"/entries/{seq}/receipt" if doc.get("vsa") is not None else None,
            "missing": missing,
        }

    # receipt -------------------------------------------------------------------

    def receipt(self, seq: int) -> bytes:
        """The receipt of entry `seq`, as `promote receipt SEQ` writes it: the VSA, the
        entry, its inclusion proof against the head and a checkpoint signed by the
        runner key (read from the workspace, as the command does; nothing is written).

        Raises:
            NotFound: no such entry, a v1 entry (no VSA), the VSA or runner key missing.
        """
        from promote.attest.runner import load_runner_key
        from promote.canonical import pretty
        from promote.errors import PromoteError
        from promote.receipt import DEFAULT_LOG_NAME, build_receipt

        self._seq(seq)
        try:
            key = load_runner_key(self.ws.root)
            doc = build_receipt(self.ledger, self.store, seq, key, DEFAULT_LOG_NAME)
        except (PromoteError, CasError) as e:
            raise NotFound(f"no receipt for entry {seq}: {str(e).splitlines()[0][:300]}") from None
        return pretty(doc)

    # path history --------------------------------------------------------------

    def path(self, path: str, start: int | None, per: int) -> dict[str, Any]:
        """The entries that changed `path`, newest first, from entry `start` down."""
        head = self.index.update(self.ledger)
        seqs = self.index.seqs_of_path(path)
        if not seqs:
            raise NotFound(f"no ledger entry changes {path!r}")
        if start is not None:
            seqs = [s for s in seqs if s <= start]
        page = seqs[::-1][:per]
        more = seqs[::-1][per:]
        rows = []
        for seq in page:
            r = next(iter_log(self.ws, self.ledger, 1, start=seq))
            row = _row(r, r_doc(r))
            row["change"] = next((c for c in row["changes"] if c["path"] == path), None)
            rows.append(row)
        current = None
        for row in rows[:1]:
            if start is None or start >= head.seq:
                current = (row["change"] or {}).get("to")
        return {
            "path": path,
            "head": head.to_dict(),
            "current": current,
            "count": len(self.index.seqs_of_path(path)),
            "entries": rows,
            "older": more[0] if more else None,
        }

    # search --------------------------------------------------------------------

    def search(self, q: str) -> dict[str, Any]:
        """A digest (what names it, and whether the store has it), or a path (the
        paths the ledger has changed, equal to it or under it)."""
        q = q.strip()
        if not q:
            raise BadRequest("search: want a digest or a path")
        if len(q) > MAX_PARAM:
            raise BadRequest("search: query too long")
        head = self.index.update(self.ledger)
        looks_digest = q.startswith("blake3:") or bool(_HEX64.fullmatch(q))
        if looks_digest:
            digest = parse_digest(q)
            hits = []
            for seq in self.index.seqs_of_digest(digest)[::-1][:MAX_PER]:
                entry = parse_entry(self.ledger.read(seq))
                roles = _roles(entry.doc, entry.hash, digest)
                if roles:
                    hits.append({"seq": seq, "entry": str(entry.hash), "roles": roles})
            try:
                in_store = self.store.has(digest)
            except CasError:
                in_store = False
            return {
                "query": q,
                "kind": "digest",
                "digest": str(digest),
                "head": head.to_dict(),
                "entries": hits,
                "in_store": in_store,
                "paths": [],
            }
        prefix = parse_path(q.rstrip("/")) if q.rstrip("/") else ""
        exact = prefix if prefix in self.index.paths else None
        under = self.index.paths_under(prefix + "/", MAX_PER)
        return {
            "query": q,
            "kind": "path",
            "head": head.to_dict(),
            "path": exact,
            "paths": ([exact] if exact else []) + under,
            "entries": [],
            "in_store": None,
        }

    # verification --------------------------------------------------------------

    def verification(self, recheck: bool = False) -> dict[str, Any]:
        """`promote verify`'s checks (the chain, the pointers, the objects, the view),
        run on demand and kept until the head moves (or `recheck`)."""
        from promote.verify import verify_workspace

        with self._verify_lock:
            head = self.ledger.head()
            v = self._verified
            if v is None or v.head != head or recheck:
                problems = verify_workspace(self.ws, self.ledger)
                now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
                v = self._verified = _Verified(head, now, [p.to_dict() for p in problems])
                cached = False
            else:
                cached = True
        found = [p for p in v.problems if p.get("kind") in SIGNATURE_KINDS]
        return {
            "head": v.head.to_dict(),
            "checked_at": v.checked_at,
            "cached": cached,
            "clean": not v.problems,
            "checks": ["chain", "pointers", "objects", "view", "signatures"],
            "problems": v.problems,
            # promote verify's re-justification of every entry (promote.justify)
            "signatures": {
                "entries": v.head.seq,
                "checked": "every entry re-justified: the runner signature, each"
                " attestation against the trust roots pinned for it, the VSA",
                "clean": not found,
                "problems": found,
            },
        }

    # objects -------------------------------------------------------------------

    def object_size(self, digest: Digest) -> int:
        if not self.serve_objects:
            raise NotFound("objects are not served (start promote serve with --serve-objects)")
        try:
            return self.store.size(digest)
        except CasError:
            raise NotFound(f"no object {digest} in the store") from None

    def object_chunks(self, digest: Digest) -> Iterable[bytes]:
        """The object's bytes, verified while streaming (the last chunk is held back
        until the whole object re-hashes, so a corrupt object never arrives whole)."""
        return self.store.open(digest)


def r_doc(r: LogRecord) -> Mapping[str, Any]:
    """The entry document a log record was read from."""
    return r.doc if r.doc is not None else {}
