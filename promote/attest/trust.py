"""The trust roots, `control/promote/trust.json`: who may sign what.

    {"schema": "promote-trust/v1",
     "signers": [{"id": "ci-checker", "roles": ["checker"],
                  "keys": [{"keyid": "<hex SHA-256 of the DER SPKI>",
                            "public_key": "-----BEGIN PUBLIC KEY-----\\n..."}]}],
     "roles": {"builder": {"threshold": 1}, "checker": {"threshold": 1},
               "runner": {"threshold": 1}, "admin": {"threshold": 2}}}

Checked by `trust.schema.json` (JSON Schema 2020-12), then for meaning: each
`public_key` is an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo PEM whose id is its
`keyid`; signer ids are unique; a key belongs to exactly one signer and is listed once.

A role's threshold counts DISTINCT SIGNERS of that role with a signature that
verifies: a second signature by one key, a second key of one signer, a signature by a
signer of another role, by an unknown key, or one that does not verify never counts.
`get_verification_result` returns who signed and who did not (after python-tuf's
`get_verification_result`), so a refusal can say why; `verify_statement` is the
boundary that raises.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from promote.attest.dsse import Envelope, verify_envelope
from promote.attest.errors import InvalidKey, InvalidTrust, Untrusted
from promote.attest.keys import PublicKey, key_id, load_public_pem
from promote.attest.statement import Statement, statement_of
from promote.canonical import canonical, load_json
from promote.errors import InvalidDocument

__all__ = [
    "ROLES",
    "TRUST_PATH",
    "TRUST_SCHEMA",
    "Signer",
    "TrustRoots",
    "TrustedKey",
    "VerificationResult",
    "Verified",
    "get_verification_result",
    "load_trust",
    "verify_statement",
]

TRUST_SCHEMA = "promote-trust/v1"
#: Where a workspace keeps its trust roots, relative to its root.
TRUST_PATH = "control/promote/trust.json"
ROLES = ("builder", "checker", "runner", "admin")
_SCHEMA_FILE = "trust.schema.json"


@functools.cache
def _validator() -> Any:
    from importlib import resources

    import jsonschema

    schema = json.loads(resources.files("promote").joinpath("data", _SCHEMA_FILE).read_bytes())
    return jsonschema.Draft202012Validator(schema)


# jsonschema's import is a good part of a small promote's start-up, and every promote
# loads the trust roots. `_trust_ok` says, in plain Python, what trust.schema.json
# requires: a document it accepts is valid; anything else goes to jsonschema, which
# decides and words the errors. So it may refuse more than the schema (a threshold
# written 1.0), never less: tests/test_fast_trust_schema.py compares the two.

#: The schema's patterns, matched as jsonschema matches them (`re.search`).
_SIGNER_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_KEYID = re.compile(r"^[0-9a-f]{64}$")
_PEM_START = "-----BEGIN PUBLIC KEY-----"
_TOP = frozenset({"schema", "signers", "roles"})
_SIGNER = frozenset({"id", "roles", "keys"})
_KEY = frozenset({"keyid", "public_key"})
_THRESHOLD = frozenset({"threshold"})


def _key_ok(k: Any) -> bool:
    if type(k) is not dict or k.keys() != _KEY:
        return False
    keyid, pem = k["keyid"], k["public_key"]
    if type(keyid) is not str or _KEYID.search(keyid) is None:
        return False
    return type(pem) is str and len(pem) <= 4096 and pem.startswith(_PEM_START)


def _signer_ok(s: Any) -> bool:
    if type(s) is not dict or s.keys() != _SIGNER:
        return False
    sid, roles, keys = s["id"], s["roles"], s["keys"]
    if type(sid) is not str or _SIGNER_ID.search(sid) is None:
        return False
    if type(roles) is not list or not roles:
        return False
    if not all(type(r) is str and r in ROLES for r in roles) or len(set(roles)) != len(roles):
        return False
    if type(keys) is not list or not 1 <= len(keys) <= 16:
        return False
    return all(_key_ok(k) for k in keys)


def _trust_ok(doc: Any) -> bool:
    """Whether `doc` certainly matches trust.schema.json (False: ask jsonschema)."""
    if type(doc) is not dict or doc.keys() != _TOP:
        return False
    schema, signers, roles = doc["schema"], doc["signers"], doc["roles"]
    if type(schema) is not str or schema != TRUST_SCHEMA:
        return False
    if type(signers) is not list or len(signers) > 256:
        return False
    if type(roles) is not dict or roles.keys() != set(ROLES):
        return False
    for role in roles.values():
        if type(role) is not dict or role.keys() != _THRESHOLD:
            return False
        threshold = role["threshold"]
        if type(threshold) is not int or not 1 <= threshold <= 256:
            return False
    return all(_signer_ok(s) for s in signers)


def _schema_errors(doc: Any) -> list[str]:
    if _trust_ok(doc):
        return []
    errors = sorted(_validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:3]:
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        msg = e.message if len(e.message) < 160 else e.message[:157] + "..."
        out.append(f"{where}: {msg}")
    return out


@attrs.frozen
class TrustedKey:
    """A public key as trust.json lists it: its id, its PEM text, and the key."""

    keyid: str
    pem: str = attrs.field(repr=False)
    key: PublicKey = attrs.field(eq=False, repr=False)

    @classmethod
    def from_pem(cls, pem: str) -> TrustedKey:
        key = load_public_pem(pem.encode())
        return cls(key_id(key), pem, key)

    def to_dict(self) -> dict[str, str]:
        return {"keyid": self.keyid, "public_key": self.pem}


@attrs.frozen
class Signer:
    """One signer: an id, the roles it holds and its keys."""

    id: str
    roles: tuple[str, ...]
    keys: tuple[TrustedKey, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "roles": list(self.roles), "keys": [k.to_dict() for k in self.keys]}


@attrs.frozen
class TrustRoots:
    """The signers and the threshold of each role."""

    signers: tuple[Signer, ...]
    thresholds: Mapping[str, int] = attrs.field(eq=False)

    def __attrs_post_init__(self) -> None:
        seen_ids: set[str] = set()
        owner: dict[str, str] = {}
        for s in self.signers:
            if s.id in seen_ids:
                raise InvalidTrust(f"trust roots: signer {s.id!r} is listed twice")
            seen_ids.add(s.id)
            for k in s.keys:
                if k.keyid in owner:
                    where = "twice" if owner[k.keyid] == s.id else f"also under {owner[k.keyid]!r}"
                    raise InvalidTrust(
                        f"trust roots: key {k.keyid} of signer {s.id!r} is listed {where}"
                        " (one key, one signer, once)"
                    )
                owner[k.keyid] = s.id
        if set(self.thresholds) != set(ROLES):
            raise InvalidTrust(f"trust roots: want a threshold for each role: {', '.join(ROLES)}")

    @property
    def keys(self) -> dict[str, PublicKey]:
        """Every trusted key, by key id."""
        return {k.keyid: k.key for s in self.signers for k in s.keys}

    def signer_of(self, keyid: str) -> Signer:
        return next(s for s in self.signers if any(k.keyid == keyid for k in s.keys))

    def holders(self, role: str) -> frozenset[str]:
        """The ids of the signers that hold `role`."""
        return frozenset(s.id for s in self.signers if role in s.roles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": TRUST_SCHEMA,
            "signers": [s.to_dict() for s in self.signers],
            "roles": {r: {"threshold": self.thresholds[r]} for r in ROLES},
        }

    def encode(self) -> bytes:
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, doc: object) -> TrustRoots:
        """Validate parsed trust roots: schema first, then meaning.

        Raises:
            InvalidTrust: with a one-line reason.
        """
        errors = _schema_errors(doc)
        if errors:
            raise InvalidTrust("trust roots do not match their schema: " + "; ".join(errors))
        assert isinstance(doc, dict)
        signers = []
        for s in doc["signers"]:
            keys = []
            for i, k in enumerate(s["keys"]):
                try:
                    tk = TrustedKey.from_pem(k["public_key"])
                except InvalidKey as e:
                    raise InvalidTrust(f"trust roots: signer {s['id']!r} key {i}: {e}") from None
                if tk.keyid != k["keyid"]:
                    raise InvalidTrust(
                        f"trust roots: signer {s['id']!r} key {i}: keyid {k['keyid']} is not"
                        f" the key's id {tk.keyid}"
                    )
                keys.append(tk)
            signers.append(Signer(s["id"], tuple(s["roles"]), tuple(keys)))
        thresholds = {r: v["threshold"] for r, v in doc["roles"].items()}
        return cls(tuple(signers), thresholds)


def load_trust(data: bytes, what: str = "trust roots") -> TrustRoots:
    """Parse trust.json bytes strictly.

    Raises:
        InvalidTrust: with a one-line reason.
    """
    try:
        doc = load_json(data, what)
    except InvalidDocument as e:
        raise InvalidTrust(str(e)) from None
    return TrustRoots.from_dict(doc)


@attrs.frozen
class VerificationResult:
    """Who signed an envelope, for one role (or, role None, for any role).

    `signed`: the signers of the role with a signature that verifies; `unsigned`: the
    signers of the role without one; `other_roles`: trusted signers outside the role
    whose signature verifies (never counted); `problems`: one line per signature that
    did not count (unknown key id, bad signature, a second one by the same key).
    """

    role: str | None
    threshold: int
    signed: frozenset[str]
    unsigned: frozenset[str]
    other_roles: frozenset[str]
    problems: tuple[str, ...]

    @property
    def verified(self) -> bool:
        return len(self.signed) >= self.threshold

    def reason(self) -> str:
        """One line: why the threshold is not met (or that it is)."""
        who = f"role {self.role}" if self.role else "any trusted signer"
        got = f"{len(self.signed)} of {self.threshold} distinct signers of {who}"
        if self.verified:
            return f"verified: {got} ({', '.join(sorted(self.signed))})"
        parts = [f"not trusted: {got}"]
        if self.signed:
            parts.append(f"signed by {', '.join(sorted(self.signed))}")
        if self.other_roles:
            parts.append(f"signed outside the role by {', '.join(sorted(self.other_roles))}")
        parts.extend(self.problems)
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "threshold": self.threshold,
            "verified": self.verified,
            "signed": sorted(self.signed),
            "unsigned": sorted(self.unsigned),
            "other_roles": sorted(self.other_roles),
            "problems": list(self.problems),
        }


def get_verification_result(
    envelope: Envelope, trust: TrustRoots, role: str | None
) -> VerificationResult:
    """Check `envelope`'s signatures against `trust`, for `role`.

    Every trusted key is tried (a signature selects its key by `keyid`), so a signer
    outside the role is named rather than called unknown; only distinct signers of the
    role count. With `role` None, any trusted signer counts and the threshold is 1.

    Raises:
        ValueError: an unknown role (a programming error: the CLI offers the four).
    """
    if role is not None and role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    found = verify_envelope(envelope, trust.keys)
    signers = {trust.signer_of(kid).id for kid in found.verified}
    holders = trust.holders(role) if role else frozenset(s.id for s in trust.signers)
    signed = frozenset(signers & holders)
    return VerificationResult(
        role=role,
        threshold=trust.thresholds[role] if role else 1,
        signed=signed,
        unsigned=holders - signed,
        other_roles=frozenset(signers - holders),
        problems=found.problems,
    )


@attrs.frozen
class Verified:
    """A statement whose envelope met its threshold, and who signed it."""

    result: VerificationResult
    statement: Statement


def verify_statement(envelope: Envelope, trust: TrustRoots, role: str | None) -> Verified:
    """Verify, then check the payloadType, then parse the verified payload bytes (the
    order of the DSSE protocol).

    Raises:
        Untrusted: the role's threshold is not met (exit 3), with the reason.
        InvalidEnvelope: not an in-toto payloadType (exit 2).
        InvalidStatement: the signed payload is not a valid statement (exit 2).
    """
    result = get_verification_result(envelope, trust, role)
    if not result.verified:
        raise Untrusted(f"attestation {result.reason()}")
    return Verified(result, statement_of(envelope))
