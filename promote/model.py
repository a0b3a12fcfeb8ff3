"""The documents of promotion: capsule, CHECK report, pointer state, changes.

A capsule is `promote-capsule/v2` (its evidence: the attestations it names, by the
digest of each DSSE envelope in the store; its `kind`: `release` or `control`) or the
older `promote-capsule/v1` (its evidence: one unsigned CHECK report), which is still
read: the gate turns that report into an attestation with no signer
(docs/adr/0010-trust-in-the-gate-and-the-ledger.md).

Each is a small immutable class whose constructor checks meaning, with `from_dict` /
`to_dict` that are exact inverses. `load_capsule` and `load_check_report` are the
boundary: bytes in, one typed error out (schema first, then meaning).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from cas.digest import Digest, ObjectRef, hash_bytes
from promote.canonical import canonical, load_json
from promote.errors import InvalidCapsule, InvalidDocument

__all__ = [
    "ABSENT",
    "CAPSULE_SCHEMA",
    "CAPSULE_SCHEMA_V1",
    "MAX_ATTESTATIONS",
    "CHECK_SCHEMA",
    "Capsule",
    "Change",
    "CheckReport",
    "State",
    "Target",
    "check_policy_input",
    "load_capsule",
    "load_check_report",
]

CAPSULE_SCHEMA = "promote-capsule/v2"
CAPSULE_SCHEMA_V1 = "promote-capsule/v1"
KINDS = ("release", "control")
#: How many attestations one capsule may name.
MAX_ATTESTATIONS = 256
CHECK_SCHEMA = "check-report/v1"
STATE_SCHEMA = "promote-state/v1"
ABSENT = "absent"


#: The schemas another schema may name by `$id` (the policy input's `capsule`).
_REFERABLE = ("promote_capsule.schema.json",)


@functools.cache
def _schema(name: str) -> Any:
    from importlib import resources  # only when jsonschema has to decide

    return json.loads(resources.files("promote").joinpath("data", name).read_bytes())


@functools.cache
def _validator(name: str) -> Any:
    import jsonschema
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry: Registry[Any] = Registry().with_resources(
        (_schema(n)["$id"], DRAFT202012.create_resource(_schema(n))) for n in _REFERABLE
    )
    return jsonschema.Draft202012Validator(_schema(name), registry=registry)


def _schema_errors(name: str, doc: Any) -> list[str]:
    errors = sorted(_validator(name).iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:5]:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        msg = " ".join(e.message.split())  # one line
        msg = msg if len(msg) < 200 else msg[:197] + "..."
        out.append(f"{where}: {msg}")
    return out


# -- the schemas' fast path ----------------------------------------------------
#
# jsonschema takes about 0.3 ms a target (0.3 s for a capsule of 1,000) and most of a
# small run's start-up for its import. The checks below say, in plain Python, what
# promote_capsule.schema.json and check_report.schema.json require. A document they
# accept is valid; anything else goes to jsonschema, which decides and words the
# errors. So they may refuse more than the schema (a size written 1.0, a `delete` of
# 1), never less: tests/test_fast_schema.py compares them with jsonschema on
# generated valid and mutated documents.

#: The schemas' digest pattern, matched as jsonschema matches it (`re.search`).
_DIGEST = re.compile(r"^blake3:[0-9a-f]{64}$")
_SIZE_MAX = 2**53 - 1
_META = frozenset({"builder", "source_revision"})
_TARGET = frozenset({"path", "digest", "size", "delete", "expect"})
_V2 = frozenset({"schema", "kind", "targets", "evidence", "base", "meta"})
_V1 = frozenset({"schema", "targets", "evidence", "base", "meta"})
_REPORT = frozenset({"schema", "status", "subjects", "checks"})
_SUBJECT = frozenset({"digest", "size"})
_CHECK = frozenset({"name", "status"})


def _digest_ok(value: Any) -> bool:
    return type(value) is str and _DIGEST.search(value) is not None


def _size_ok(value: Any) -> bool:
    return type(value) is int and 0 <= value <= _SIZE_MAX


def _target_ok(t: Any) -> bool:
    if type(t) is not dict or not t.keys() <= _TARGET:
        return False
    path = t.get("path")
    if type(path) is not str or not 1 <= len(path) <= 4096:
        return False
    if "delete" in t:
        if t["delete"] is not True or "digest" in t or "size" in t:
            return False
    elif not (_digest_ok(t.get("digest")) and _size_ok(t.get("size"))):
        return False
    return "expect" not in t or t["expect"] == ABSENT or _digest_ok(t["expect"])


def _capsule_ok(doc: Any) -> bool:
    """Whether `doc` certainly matches promote_capsule.schema.json (False: ask jsonschema)."""
    if type(doc) is not dict:
        return False
    v1 = doc.get("schema") == CAPSULE_SCHEMA_V1
    if not v1 and doc.get("schema") != CAPSULE_SCHEMA:
        return False
    if not doc.keys() <= (_V1 if v1 else _V2) or "targets" not in doc or "evidence" not in doc:
        return False
    targets, evidence = doc["targets"], doc["evidence"]
    if type(targets) is not list or len(targets) > 100000 or type(evidence) is not dict:
        return False
    if v1:
        if evidence.keys() != {"check_report"} or not _digest_ok(evidence["check_report"]):
            return False
        if not targets:
            return False
    else:
        atts = evidence.get("attestations")
        if evidence.keys() != {"attestations"} or type(atts) is not list:
            return False
        if not 1 <= len(atts) <= MAX_ATTESTATIONS or not all(_digest_ok(a) for a in atts):
            return False
        if len(set(atts)) != len(atts):
            return False
        kind = doc.get("kind", "release")
        if kind not in KINDS or type(kind) is not str:
            return False
        if (kind == "control") != (not targets):
            return False
    if "base" in doc and not _digest_ok(doc["base"]):
        return False
    meta = doc.get("meta", {})
    if type(meta) is not dict or not meta.keys() <= _META:
        return False
    if not all(type(v) is str and len(v) <= 256 for v in meta.values()):
        return False
    return all(_target_ok(t) for t in targets)


def _check_report_ok(doc: Any) -> bool:
    """Whether `doc` certainly matches check_report.schema.json (False: ask jsonschema)."""
    if type(doc) is not dict or doc.keys() != _REPORT or doc["schema"] != CHECK_SCHEMA:
        return False
    subjects, checks = doc["subjects"], doc["checks"]
    if doc["status"] not in ("pass", "fail") or type(doc["status"]) is not str:
        return False
    if type(subjects) is not list or len(subjects) > 100000:
        return False
    if type(checks) is not list or len(checks) > 10000:
        return False
    for s in subjects:
        if type(s) is not dict or s.keys() != _SUBJECT:
            return False
        if not (_digest_ok(s["digest"]) and _size_ok(s["size"])):
            return False
    for c in checks:
        if type(c) is not dict or c.keys() != _CHECK:
            return False
        name, status = c["name"], c["status"]
        if type(name) is not str or not 1 <= len(name) <= 256:
            return False
        if type(status) is not str or status not in ("pass", "fail", "skip"):
            return False
    return True


def _ref(data: Mapping[str, Any]) -> ObjectRef:
    return ObjectRef(Digest.parse(data["digest"]), data["size"])


@attrs.frozen
class Target:
    """One path to point at one object (or, with no object, to remove), optionally
    guarded by what it holds now."""

    path: str
    #: The object the path is to hold; None: remove the path (`"delete": true`).
    ref: ObjectRef | None
    #: None: no guard; ABSENT: the path must not exist; a Digest: it must hold that.
    expect: Digest | str | None = None

    @property
    def delete(self) -> bool:
        return self.ref is None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        expect = data.get("expect")
        if expect is not None and expect != ABSENT:
            expect = Digest.parse(expect)
        return cls(data["path"], None if data.get("delete") else _ref(data), expect)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        out.update(self.ref.to_dict() if self.ref is not None else {"delete": True})
        if self.expect is not None:
            out["expect"] = str(self.expect)
        return out


@attrs.frozen
class Capsule:
    """A promotion request that names digests only.

    `evidence` is what the capsule names as its evidence: the attestations of a v2
    capsule, or (version 1) the one CHECK report of a v1 capsule.
    """

    targets: tuple[Target, ...]
    evidence: tuple[Digest, ...]
    base: Digest | None = None
    meta: Mapping[str, str] = attrs.field(factory=dict, eq=False)
    kind: str = "release"
    version: int = 2

    def __attrs_post_init__(self) -> None:
        if self.version not in (1, 2) or self.kind not in KINDS:
            raise ValueError(f"capsule: version {self.version}, kind {self.kind!r}")
        if self.version == 1 and (len(self.evidence) != 1 or self.kind != "release"):
            raise ValueError("a v1 capsule names one CHECK report and is a release")
        if not 1 <= len(self.evidence) <= MAX_ATTESTATIONS:
            raise ValueError(f"want 1 to {MAX_ATTESTATIONS} attestations")
        if len(set(self.evidence)) != len(self.evidence):
            raise ValueError("an attestation is named twice")
        if (self.kind == "control") != (not self.targets):
            raise ValueError("a control capsule has no targets; a release has at least one")

    @property
    def check_report(self) -> Digest:
        """The CHECK report of a v1 capsule.

        Raises:
            ValueError: a v2 capsule (it names attestations).
        """
        if self.version != 1:
            raise ValueError("a promote-capsule/v2 names attestations, not a CHECK report")
        return self.evidence[0]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Capsule:
        v1 = data["schema"] == CAPSULE_SCHEMA_V1
        ev = data["evidence"]
        return cls(
            targets=tuple(Target.from_dict(t) for t in data["targets"]),
            evidence=(
                (Digest.parse(ev["check_report"]),)
                if v1
                else tuple(Digest.parse(d) for d in ev["attestations"])
            ),
            base=Digest.parse(data["base"]) if "base" in data else None,
            meta=dict(data.get("meta", {})),
            kind=data.get("kind", "release"),
            version=1 if v1 else 2,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": CAPSULE_SCHEMA_V1 if self.version == 1 else CAPSULE_SCHEMA,
            "targets": [t.to_dict() for t in self.targets],
        }
        if self.version == 1:
            out["evidence"] = {"check_report": str(self.evidence[0])}
        else:
            out["evidence"] = {"attestations": [str(d) for d in self.evidence]}
            if self.kind != "release":
                out["kind"] = self.kind
        if self.base is not None:
            out["base"] = str(self.base)
        if self.meta:
            out["meta"] = dict(self.meta)
        return out


@attrs.frozen
class CheckReport:
    """What the CHECK phase checked, and its verdict."""

    status: str
    subjects: frozenset[ObjectRef]
    checks: tuple[tuple[str, str], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckReport:
        return cls(
            status=data["status"],
            subjects=frozenset(_ref(s) for s in data["subjects"]),
            checks=tuple((c["name"], c["status"]) for c in data["checks"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CHECK_SCHEMA,
            "status": self.status,
            "subjects": [r.to_dict() for r in sorted(self.subjects)],
            "checks": [{"name": n, "status": s} for n, s in self.checks],
        }

    def uncovered(self, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
        """The refs this report did not check (digest AND size must match)."""
        return [r for r in refs if r not in self.subjects]


def load_capsule(data: bytes) -> tuple[Capsule, Any]:
    """Parse and validate capsule bytes: JSON, then schema, then meaning.

    Returns the capsule and the parsed document (for the policy input).

    Raises:
        InvalidCapsule: with a one-line reason.
    """
    try:
        doc = load_json(data, "capsule")
    except InvalidDocument as e:
        raise InvalidCapsule(str(e)) from None
    errors = [] if _capsule_ok(doc) else _schema_errors("promote_capsule.schema.json", doc)
    if errors:
        raise InvalidCapsule("capsule does not match its schema: " + "; ".join(errors))
    try:
        return Capsule.from_dict(doc), doc
    except (InvalidDocument, ValueError) as e:
        raise InvalidCapsule(f"capsule: {e}") from None
    except Exception as e:  # a digest or size the schema let through
        raise InvalidCapsule(f"capsule: {e}") from None


def check_policy_input(doc: Any, what: str = "policy input") -> None:
    """Refuse a document that is not a policy input as the gate builds it
    (`promote-policy-input/v2`, policy_input.schema.json).

    Raises:
        InvalidDocument: with a one-line reason.
    """
    errors = _schema_errors("policy_input.schema.json", doc)
    if errors:
        raise InvalidDocument(
            f"{what} does not match promote-policy-input/v2 (policy_input.schema.json): "
            + "; ".join(errors)
        )


def load_check_report(data: bytes) -> tuple[CheckReport, Any]:
    """Parse and validate CHECK report bytes.

    Raises:
        InvalidDocument: with a one-line reason.
    """
    doc = load_json(data, "CHECK report")
    errors = [] if _check_report_ok(doc) else _schema_errors("check_report.schema.json", doc)
    if errors:
        raise InvalidDocument("CHECK report does not match its schema: " + "; ".join(errors))
    try:
        return CheckReport.from_dict(doc), doc
    except Exception as e:
        raise InvalidDocument(f"CHECK report: {e}") from None


@attrs.frozen
class Change:
    """One pointer move: `path` goes from `before` (None: absent) to `after`."""

    path: str
    before: ObjectRef | None
    after: ObjectRef | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "from": self.before.to_dict() if self.before else None,
            "to": self.after.to_dict() if self.after else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Change:
        return cls(
            data["path"],
            _ref(data["from"]) if data["from"] is not None else None,
            _ref(data["to"]) if data["to"] is not None else None,
        )


@attrs.frozen
class State:
    """The pointer state: which object each authoritative path holds."""

    pointers: Mapping[str, ObjectRef] = attrs.field(factory=dict)

    def get(self, path: str) -> ObjectRef | None:
        return self.pointers.get(path)

    def apply(self, changes: Iterable[Change]) -> State:
        new = dict(self.pointers)
        for c in changes:
            if c.after is None:
                new.pop(c.path, None)
            else:
                new[c.path] = c.after
        return State(new)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": STATE_SCHEMA,
            "pointers": {p: r.to_dict() for p, r in sorted(self.pointers.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> State:
        if data.get("schema") != STATE_SCHEMA or not isinstance(data.get("pointers"), dict):
            raise InvalidDocument("not a promote-state/v1 document")
        return cls({p: _ref(r) for p, r in data["pointers"].items()})

    def encode(self) -> bytes:
        return canonical(self.to_dict())

    def ref(self) -> ObjectRef:
        return hash_bytes(self.encode())
