"""in-toto Statement v1 (in-toto/attestation `spec/v1/statement.md`), strictly.

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": "app.txt", "digest": {"blake3": "<64 hex>", "sha256": "<64 hex>"}}],
     "predicateType": "<URI>",
     "predicate": {...}}

carried in a DSSE envelope of payloadType `application/vnd.in-toto+json`.

Stricter than the spec, as every document the gate reads (ADR 2): unknown fields are
refused at the top level and in a subject; a subject has exactly `name` and `digest`;
digests are `blake3` or `sha256`, 64 lowercase hex digits each; at least one subject;
`predicate` is required and is an object, at most `MAX_PREDICATE_DEPTH` deep and the
whole statement at most `MAX_STATEMENT` bytes. The predicate's content is not
interpreted here: it is passed on (to the policy, once the gate reads attestations).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from promote.attest.dsse import Envelope
from promote.attest.errors import InvalidEnvelope, InvalidStatement
from promote.canonical import canonical, load_json

__all__ = [
    "CHECK_PREDICATE",
    "CONTROL_PREDICATE",
    "DIGEST_ALGORITHMS",
    "MAX_PREDICATE_DEPTH",
    "MAX_STATEMENT",
    "PAYLOAD_TYPE",
    "STATEMENT_TYPE",
    "TEST_RESULT_PREDICATE",
    "Statement",
    "Subject",
    "load_statement",
    "statement_of",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The project's own predicate type for its CHECK report (control/promote/promote_protocol.md,
#: "Signed evidence"). Not registered with in-toto or anywhere else yet.
CHECK_PREDICATE = "https://cas-promote.invalid/check-report/v1"
#: The project's predicate type for a change of the pinned policy and trust roots (a
#: control promotion, docs/adr/0010-trust-in-the-gate-and-the-ledger.md).
CONTROL_PREDICATE = "https://cas-promote.invalid/control-change/v1"
#: The in-toto attestation framework's test-result predicate.
TEST_RESULT_PREDICATE = "https://in-toto.io/attestation/test-result/v0.1"

#: The digest algorithms a subject may name, and the hex length of each.
DIGEST_ALGORITHMS: Mapping[str, int] = {"blake3": 64, "sha256": 64}
MAX_STATEMENT = 4 << 20
MAX_PREDICATE_DEPTH = 32
MAX_SUBJECTS = 4096
MAX_NAME = 4096
MAX_URI = 1024

_HEX = re.compile(r"[0-9a-f]+")
#: An absolute URI: a scheme, a colon, no whitespace or control characters.
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s\x00-\x1f\x7f]+")


def _depth(value: Any) -> int:
    """How deep `value` nests objects and arrays (a scalar is 0), iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d + 1)
        stack.extend((c, d + 1) for c in children)
    return deepest


@attrs.frozen
class Subject:
    """An artifact by name and digests (algorithm -> lowercase hex)."""

    name: str
    digest: tuple[tuple[str, str], ...]

    @property
    def digests(self) -> dict[str, str]:
        return dict(self.digest)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}

    @classmethod
    def from_dict(cls, doc: object, what: str = "subject") -> Subject:
        if not isinstance(doc, dict) or set(doc) != {"name", "digest"}:
            raise InvalidStatement(f"{what}: want exactly the fields name, digest")
        name = doc["name"]
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
            raise InvalidStatement(f"{what}: name must be a string of 1 to {MAX_NAME} characters")
        digest = doc["digest"]
        if not isinstance(digest, dict) or not digest:
            raise InvalidStatement(f"{what}: digest must be a non-empty object")
        for alg, value in digest.items():
            want = DIGEST_ALGORITHMS.get(alg)
            if want is None:
                raise InvalidStatement(
                    f"{what}: digest algorithm {alg!r} not allowed"
                    f" (want {', '.join(DIGEST_ALGORITHMS)})"
                )
            if not isinstance(value, str) or len(value) != want or not _HEX.fullmatch(value):
                raise InvalidStatement(f"{what}: {alg} digest must be {want} lowercase hex digits")
        return cls(name, tuple(digest.items()))


@attrs.frozen
class Statement:
    """An in-toto Statement v1: subjects, a predicate type and the predicate."""

    subjects: tuple[Subject, ...]
    predicate_type: str
    predicate: Mapping[str, Any] = attrs.field(eq=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subjects],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def encode(self) -> bytes:
        """RFC 8785 bytes: the payload `promote attest` signs."""
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, doc: object) -> Statement:
        """Validate a parsed statement.

        Raises:
            InvalidStatement: with a one-line reason.
        """
        keys = {"_type", "subject", "predicateType", "predicate"}
        if not isinstance(doc, dict) or set(doc) != keys:
            raise InvalidStatement(f"statement: want exactly the fields {', '.join(sorted(keys))}")
        if doc["_type"] != STATEMENT_TYPE:
            raise InvalidStatement(f"statement: _type must be {STATEMENT_TYPE}")
        subjects = doc["subject"]
        if not isinstance(subjects, list) or not 1 <= len(subjects) <= MAX_SUBJECTS:
            raise InvalidStatement(f"statement: want a list of 1 to {MAX_SUBJECTS} subjects")
        ptype = doc["predicateType"]
        if not isinstance(ptype, str) or len(ptype) > MAX_URI or not _URI.fullmatch(ptype):
            raise InvalidStatement("statement: predicateType must be an absolute URI")
        predicate = doc["predicate"]
        if not isinstance(predicate, dict):
            raise InvalidStatement("statement: predicate must be an object")
        if _depth(predicate) > MAX_PREDICATE_DEPTH:
            raise InvalidStatement(f"statement: predicate nested deeper than {MAX_PREDICATE_DEPTH}")
        return cls(
            tuple(Subject.from_dict(s, f"statement subject {i}") for i, s in enumerate(subjects)),
            ptype,
            predicate,
        )

    @classmethod
    def build(
        cls, subjects: list[Subject], predicate_type: str, predicate: Mapping[str, Any]
    ) -> Statement:
        """A statement, validated exactly as a parsed one would be (size included).

        Raises:
            InvalidStatement: what `load_statement` would refuse.
        """
        st = cls(tuple(subjects), predicate_type, dict(predicate))
        return load_statement(st.encode())


def load_statement(payload: bytes) -> Statement:
    """Parse statement bytes strictly (size, duplicate keys, depth, then meaning).

    Raises:
        InvalidStatement: with a one-line reason.
    """
    doc = load_json(payload, "statement", limit=MAX_STATEMENT, error=InvalidStatement)
    return Statement.from_dict(doc)


def statement_of(envelope: Envelope) -> Statement:
    """The statement an envelope carries, parsed from its payload bytes.

    Call it on an envelope whose signatures were verified: these are those bytes.

    Raises:
        InvalidEnvelope: the payloadType is not `application/vnd.in-toto+json`.
        InvalidStatement: the payload is not a valid statement.
    """
    if envelope.payload_type != PAYLOAD_TYPE:
        shown = envelope.payload_type[:80]
        raise InvalidEnvelope(f"DSSE envelope: payloadType {shown!r}, want {PAYLOAD_TYPE}")
    return load_statement(envelope.payload)
