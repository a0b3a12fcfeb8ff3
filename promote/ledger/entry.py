"""Ledger entries: canonical JSON (RFC 8785), hash-linked, signed by the runner.

An entry's hash is the BLAKE3 of exactly its bytes; each entry names the hash of the
one before, so editing, dropping or reordering any entry breaks every link after it.

`promote-ledger-entry/v2` (ADR 10, "Signed entries") records what the promotion
relied on and who committed it:

    {"schema": "promote-ledger-entry/v2", "seq": n, "prev": "blake3:..." | null,
     "capsule": {ref}, "evidence": [{ref}, ...], "decision": {ref}, "policy": {ref},
     "trust": {ref}, "vsa": {ref}, "state_before": {ref}, "state_after": {ref},
     "changes": [...], "signature": {"keyid": "<hex SHA-256 of the DER SPKI>", "sig": "<base64>"}}

`evidence` names the attestations (DSSE envelopes) of the capsule, `policy` and
`trust` the policy bundle and the trust roots (`trust.json`'s canonical bytes) in
force after the entry, `vsa` the SLSA Verification Summary Attestation the runner
signed for the promotion (a DSSE envelope in the store, `promote.vsa`). `signature` is the runner key's signature over

    PAE("application/vnd.cas-promote.ledger-entry+json", canonical(entry - "signature"))

(the DSSE pre-authentication encoding, `promote.attest.dsse.pae`). It sits inside the
entry, so the hash chain covers it and the commit point stays one file or one row.

`promote-ledger-entry/v1` (a `check_report` ref, no `trust`, no `signature`) still
parses: such an entry is unsigned, and a verifier accepts it only when told to
(`--allow-unsigned`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

import attrs

from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import CasError, IntegrityError
from promote.attest.dsse import b64decode, pae
from promote.attest.errors import InvalidEnvelope, Untrusted
from promote.attest.keys import PrivateKey, key_id, sign, verify
from promote.canonical import canonical, encode_plain, load_json, parse_plain
from promote.errors import InvalidDocument
from promote.model import Change, State

if TYPE_CHECKING:
    from promote.attest.trust import TrustRoots

__all__ = [
    "EMPTY_STATE",
    "ENTRY_PAYLOAD_TYPE",
    "ENTRY_SCHEMA",
    "ENTRY_SCHEMA_V1",
    "ENTRY_SCHEMAS",
    "GENESIS_BASE",
    "MAX_EVIDENCE_REFS",
    "Entry",
    "Head",
    "UnsignedEntry",
    "build_entry",
    "entry_signature_ok",
    "parse_entry",
    "sign_entry",
]

ENTRY_SCHEMA = "promote-ledger-entry/v2"
ENTRY_SCHEMA_V1 = "promote-ledger-entry/v1"
ENTRY_SCHEMAS = (ENTRY_SCHEMA_V1, ENTRY_SCHEMA)
#: The DSSE payloadType whose PAE an entry's signature covers.
ENTRY_PAYLOAD_TYPE = "application/vnd.cas-promote.ledger-entry+json"
#: As many attestations as a capsule may name (`promote.model.MAX_ATTESTATIONS`).
MAX_EVIDENCE_REFS = 256
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


class _Doc:
    """What signed and unsigned entries share: the parsed document's fields, each
    parsed once (`_parsed`: the document never changes after construction)."""

    doc: Mapping[str, Any]
    _parsed: dict[str, Any]

    def _ref(self, key: str) -> ObjectRef:
        if key not in self._parsed:
            self._parsed[key] = ObjectRef.from_dict(self.doc[key])
        ref: ObjectRef = self._parsed[key]
        return ref

    @property
    def seq(self) -> int:
        return int(self.doc["seq"])

    @property
    def version(self) -> int:
        """1 or 2."""
        return 1 if self.doc["schema"] == ENTRY_SCHEMA_V1 else 2

    @property
    def capsule_ref(self) -> ObjectRef:
        return self._ref("capsule")

    @property
    def decision_ref(self) -> ObjectRef:
        return self._ref("decision")

    @property
    def policy_ref(self) -> ObjectRef:
        return self._ref("policy")

    @property
    def state_before(self) -> ObjectRef:
        return self._ref("state_before")

    @property
    def state_after(self) -> ObjectRef:
        return self._ref("state_after")

    @property
    def changes(self) -> list[Change]:
        if "changes" not in self._parsed:
            self._parsed["changes"] = tuple(Change.from_dict(c) for c in self.doc["changes"])
        return list(self._parsed["changes"])

    @property
    def evidence(self) -> list[ObjectRef]:
        """The attestations (v2), or the one CHECK report (v1)."""
        if self.version == 1:
            return [ObjectRef.from_dict(self.doc["check_report"])]
        return [ObjectRef.from_dict(r) for r in self.doc["evidence"]]

    @property
    def vsa(self) -> ObjectRef | None:
        """The VSA's DSSE envelope (None: a v1 entry has none)."""
        return self._ref("vsa") if self.doc.get("vsa") is not None else None

    @property
    def trust(self) -> ObjectRef | None:
        """The trust roots pinned after this entry (None: a v1 entry pins none)."""
        return self._ref("trust") if self.doc.get("trust") is not None else None

    def refs(self) -> list[ObjectRef]:
        """Every object the entry names itself (not through its changes), in order."""
        out = [self._ref("capsule"), *self.evidence]
        out += [self._ref(k) for k in ("decision", "policy")]
        if self.trust is not None:
            out.append(self.trust)
        if self.vsa is not None:
            out.append(self.vsa)
        return [*out, self.state_before, self.state_after]


@attrs.frozen
class Entry(_Doc):
    """One ledger entry: its canonical bytes, its hash, and its parsed document."""

    data: bytes
    doc: Mapping[str, Any] = attrs.field(eq=False)
    _parsed: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def hash(self) -> Digest:
        if "hash" not in self._parsed:
            self._parsed["hash"] = hash_bytes(self.data).digest
        digest: Digest = self._parsed["hash"]
        return digest

    @property
    def signed(self) -> bool:
        return "signature" in self.doc

    def signed_bytes(self) -> bytes:
        """What the signature covers: PAE of the canonical entry without `signature`."""
        body = {k: v for k, v in self.doc.items() if k != "signature"}
        if self._parsed.get("plain"):  # part of a `_plain` document (`parse_entry`)
            return pae(ENTRY_PAYLOAD_TYPE, encode_plain(body))
        return pae(ENTRY_PAYLOAD_TYPE, canonical(body))

    def head(self) -> Head:
        return Head(self.seq, self.hash, self.state_after)


@attrs.frozen
class UnsignedEntry(_Doc):
    """A v2 entry before the runner signs it (`sign_entry`): never committed as is."""

    doc: Mapping[str, Any] = attrs.field(eq=False)
    data: bytes = attrs.field(init=False)
    _parsed: dict[str, Any] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @data.default
    def _data(self) -> bytes:
        return canonical(self.doc)

    def signed_bytes(self) -> bytes:
        return pae(ENTRY_PAYLOAD_TYPE, self.data)


def _common(
    head: Head,
    capsule: ObjectRef,
    decision: ObjectRef,
    policy: ObjectRef,
    state_after: ObjectRef,
    changes: list[Change],
) -> dict[str, Any]:
    return {
        "seq": head.seq + 1,
        "prev": str(head.entry) if head.entry else None,
        "capsule": capsule.to_dict(),
        "decision": decision.to_dict(),
        "policy": policy.to_dict(),
        "state_before": head.state.to_dict(),
        "state_after": state_after.to_dict(),
        "changes": [c.to_dict() for c in sorted(changes, key=lambda c: c.path)],
    }


@overload
def build_entry(
    head: Head,
    *,
    capsule: ObjectRef,
    check_report: ObjectRef,
    decision: ObjectRef,
    policy: ObjectRef,
    state_after: ObjectRef,
    changes: list[Change],
) -> Entry: ...


@overload
def build_entry(
    head: Head,
    *,
    capsule: ObjectRef,
    evidence: list[ObjectRef],
    decision: ObjectRef,
    policy: ObjectRef,
    trust: ObjectRef,
    vsa: ObjectRef,
    state_after: ObjectRef,
    changes: list[Change],
) -> UnsignedEntry: ...


def build_entry(
    head: Head,
    *,
    capsule: ObjectRef,
    decision: ObjectRef,
    policy: ObjectRef,
    state_after: ObjectRef,
    changes: list[Change],
    evidence: list[ObjectRef] | None = None,
    trust: ObjectRef | None = None,
    vsa: ObjectRef | None = None,
    check_report: ObjectRef | None = None,
) -> Entry | UnsignedEntry:
    """The next entry after `head`. Deterministic: same inputs, same bytes.

    With `evidence`, `trust` and `vsa`: a v2 entry, unsigned (`sign_entry` signs it). With
    `check_report` (the legacy form): a v1 entry, which verifies only with
    `--allow-unsigned`; kept for what still writes v1 and for tests of v1 ledgers.
    """
    doc = _common(head, capsule, decision, policy, state_after, changes)
    if check_report is not None:
        if evidence is not None or trust is not None or vsa is not None:
            raise TypeError("build_entry: check_report (v1) or evidence, trust and vsa (v2)")
        doc.update(schema=ENTRY_SCHEMA_V1, check_report=check_report.to_dict())
        return Entry(canonical(doc), doc)
    if evidence is None or trust is None or vsa is None:
        raise TypeError("build_entry: a v2 entry needs evidence, trust and vsa")
    if not 1 <= len(evidence) <= MAX_EVIDENCE_REFS:
        raise ValueError(f"build_entry: want 1 to {MAX_EVIDENCE_REFS} evidence refs")
    doc.update(
        schema=ENTRY_SCHEMA,
        evidence=[r.to_dict() for r in evidence],
        trust=trust.to_dict(),
        vsa=vsa.to_dict(),
    )
    return UnsignedEntry(doc)


def sign_entry(unsigned: UnsignedEntry, key: PrivateKey) -> Entry:
    """`unsigned` with the runner's signature: the entry to commit."""
    sig = sign(key, unsigned.signed_bytes())
    doc = dict(unsigned.doc)
    doc["signature"] = {
        "keyid": key_id(key.public_key()),
        "sig": base64.b64encode(sig).decode("ascii"),
    }
    return Entry(canonical(doc), doc)


def entry_signature_ok(entry: Entry, trust: TrustRoots) -> str:
    """The id of the runner signer of `trust` whose key signed `entry`.

    The signature's `keyid` selects the key; the key must belong to a signer holding
    the `runner` role, and the signature must verify over `entry.signed_bytes()`. An
    entry carries one signature: the runner role's threshold counts runners, and one
    entry is committed by one runner.

    Raises:
        Untrusted (3): a v1 entry (unsigned), an unknown key, a key of a signer that
            is no runner, or a signature that does not verify.
    """
    if not entry.signed:
        raise Untrusted(f"ledger entry {entry.seq}: unsigned ({entry.doc['schema']})")
    sig = entry.doc["signature"]
    kid = sig["keyid"]
    key = trust.keys.get(kid)
    if key is None:
        raise Untrusted(
            f"ledger entry {entry.seq}: signed by key {kid}, which the trust roots do not list"
        )
    signer = trust.signer_of(kid)
    if "runner" not in signer.roles:
        raise Untrusted(f"ledger entry {entry.seq}: signed by {signer.id!r}, which is not a runner")
    if not verify(key, b64decode(sig["sig"], "entry signature"), entry.signed_bytes()):
        raise Untrusted(
            f"ledger entry {entry.seq}: the signature by {signer.id!r} ({kid}) does not verify"
        )
    return signer.id


_REF_KEYS = ("capsule", "decision", "policy", "state_before", "state_after")
_KEYS_V1 = {"schema", "seq", "prev", "check_report", "changes", *_REF_KEYS}
_KEYS_V2 = {"schema", "seq", "prev", "evidence", "trust", "vsa", "signature", "changes", *_REF_KEYS}
_HEX = set("0123456789abcdef")


def _check_signature_field(sig: object) -> None:
    if not isinstance(sig, dict) or set(sig) != {"keyid", "sig"}:
        raise ValueError("signature: want exactly {keyid, sig}")
    kid = sig["keyid"]
    if not isinstance(kid, str) or len(kid) != 64 or not set(kid) <= _HEX:
        raise ValueError("signature keyid: want 64 lowercase hex digits")
    try:
        raw = b64decode(sig["sig"], "signature")
    except InvalidEnvelope as e:
        raise ValueError(str(e)) from None
    if not 1 <= len(raw) <= 512 or not sig["sig"] == base64.b64encode(raw).decode():
        raise ValueError("signature sig: want standard base64 of 1 to 512 bytes")


def parse_entry(data: bytes) -> Entry:
    """Parse entry bytes, checking shape and that they are exactly canonical.

    Checks the form only: whether the signature holds is `entry_signature_ok`.

    Raises:
        IntegrityError: for anything that is not a well-formed canonical entry.
    """
    doc, plain = parse_plain(data)  # canonical bytes, the common case, parse fast
    is_canonical = doc is not None
    if doc is None:
        try:
            doc = load_json(data, "ledger entry")
        except InvalidDocument as e:
            raise IntegrityError(str(e)) from None
    schema = doc.get("schema") if isinstance(doc, dict) else None
    keys = {ENTRY_SCHEMA_V1: _KEYS_V1, ENTRY_SCHEMA: _KEYS_V2}.get(str(schema))
    if keys is None or set(doc) != keys:
        raise IntegrityError("ledger entry: not a promote-ledger-entry/v1 or /v2 document")
    if not is_canonical:  # parse_canonical said no: load_json parsed it, so it is not
        raise IntegrityError("ledger entry: bytes are not canonical JSON")
    entry = Entry(data, doc)
    if plain:
        entry._parsed["plain"] = True  # `signed_bytes` may take `encode_plain`
    try:
        if schema == ENTRY_SCHEMA_V1:
            keyed, listed = [*_REF_KEYS, "check_report"], []
        else:
            ev = doc["evidence"]
            if not isinstance(ev, list) or not 1 <= len(ev) <= MAX_EVIDENCE_REFS:
                raise ValueError(f"evidence: want a list of 1 to {MAX_EVIDENCE_REFS} refs")
            keyed, listed = [*_REF_KEYS], ev
            _check_signature_field(doc["signature"])
        for k in keyed:  # parsed into the entry, which keeps them (`_Doc._ref`)
            entry._ref(k)
        for r in listed:
            ObjectRef.from_dict(r)
        if listed:
            entry._ref("trust")
            entry._ref("vsa")
        if doc["prev"] is not None:
            Digest.parse(doc["prev"])
        if isinstance(doc["seq"], bool) or not isinstance(doc["seq"], int) or doc["seq"] < 1:
            raise ValueError("bad seq")
        if not isinstance(doc["changes"], list):
            raise ValueError("changes: want a list")
        entry.changes  # noqa: B018  (parses each change, and keeps them)
    except (ValueError, TypeError, KeyError, AttributeError, CasError) as e:
        raise IntegrityError(f"ledger entry: malformed: {e}") from None
    return entry
