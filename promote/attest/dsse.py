"""DSSE v1 envelopes (secure-systems-lab/dsse, `protocol.md` and `envelope.md`).

A signature covers the pre-authentication encoding, never the payload alone:

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with `type` the UTF-8 bytes of the payloadType, `LEN` the ASCII decimal byte length
without leading zeros and `SP` one space (0x20). The JSON envelope is

    {"payload": base64(body), "payloadType": type,
     "signatures": [{"keyid": KEYID, "sig": base64(signature)}]}

Parsing is strict: the size, duplicate-key and depth limits of `promote.canonical`,
exactly these fields (`keyid` may be omitted), at most `MAX_SIGNATURES` signatures, and
base64 that is standard or URL-safe (the spec requires accepting both), padded, and
canonical (no stray bits), so one payload has one text form per alphabet.

Verification (`verify_envelope`) follows the spec's multi-signature rule: the result
is the set of DISTINCT keys whose signature verifies over the PAE of the exact payload
bytes the envelope carries. A `keyid` only selects the key to try (as securesystemslib
does); a signature naming a key we do not know is reported, not tried against the
others; one with no `keyid` is tried against every key. A second signature by a key
already counted, a bad signature and an unknown key id are reported in `problems`, and
never counted. Callers parse `Envelope.payload`, the very bytes that were verified.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from promote.attest.errors import InvalidEnvelope
from promote.attest.keys import PrivateKey, PublicKey, key_id, sign, verify
from promote.canonical import canonical, load_json, parse_canonical

__all__ = [
    "MAX_ENVELOPE",
    "MAX_SIGNATURES",
    "Envelope",
    "Signature",
    "Verification",
    "b64decode",
    "load_envelope",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

#: An envelope is a statement (at most `statement.MAX_STATEMENT`) in base64 plus a few
#: signatures; anything bigger is refused before it is parsed.
MAX_ENVELOPE = 8 << 20
MAX_SIGNATURES = 16
#: Ed25519 signatures are 64 bytes, DER ECDSA P-256 at most 72.
MAX_SIGNATURE_BYTES = 512
MAX_KEYID = 256
MAX_PAYLOAD_TYPE = 256


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of `payload_type` and `payload`."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def b64decode(text: object, what: str) -> bytes:
    """Standard or URL-safe base64, padded and canonical (not a mix of alphabets).

    Raises:
        InvalidEnvelope: anything else.
    """
    if not isinstance(text, str) or not text.isascii():
        raise InvalidEnvelope(f"{what}: want a base64 string")
    url_safe = "-" in text or "_" in text
    if url_safe and ("+" in text or "/" in text):
        raise InvalidEnvelope(f"{what}: mixes the standard and URL-safe base64 alphabets")
    std = text.translate(str.maketrans("-_", "+/")) if url_safe else text
    try:
        raw = base64.b64decode(std, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEnvelope(f"{what}: not valid padded base64") from None
    if base64.b64encode(raw).decode("ascii") != std:
        raise InvalidEnvelope(f"{what}: not canonical base64 (stray bits)")
    return raw


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@attrs.frozen
class Signature:
    """One signature; `keyid` (None: omitted) is an unauthenticated hint."""

    sig: bytes = attrs.field(repr=False)
    keyid: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"sig": _b64encode(self.sig)}
        if self.keyid is not None:
            out["keyid"] = self.keyid
        return out

    @classmethod
    def from_dict(cls, doc: object, what: str) -> Signature:
        if not isinstance(doc, dict) or "sig" not in doc or not set(doc) <= {"sig", "keyid"}:
            raise InvalidEnvelope(f"{what}: want {{'keyid'?, 'sig'}}")
        keyid = doc.get("keyid")
        if keyid is not None and (not isinstance(keyid, str) or len(keyid) > MAX_KEYID):
            raise InvalidEnvelope(f"{what}: keyid must be a string of at most {MAX_KEYID}")
        sig = b64decode(doc["sig"], f"{what} sig")
        if not sig or len(sig) > MAX_SIGNATURE_BYTES:
            raise InvalidEnvelope(f"{what}: want 1 to {MAX_SIGNATURE_BYTES} signature bytes")
        return cls(sig, keyid or None)  # envelope.md: empty fields may be omitted


@attrs.frozen
class Envelope:
    """A DSSE envelope: the payload's exact bytes, its type and the signatures."""

    payload_type: str
    payload: bytes = attrs.field(repr=False)
    signatures: tuple[Signature, ...] = ()

    def pae(self) -> bytes:
        """The bytes every signature covers."""
        return pae(self.payload_type, self.payload)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": _b64encode(self.payload),
            "payloadType": self.payload_type,
            "signatures": [s.to_dict() for s in self.signatures],
        }

    def encode(self) -> bytes:
        """The envelope as RFC 8785 JSON: what `promote attest` puts into the store."""
        return canonical(self.to_dict())

    @classmethod
    def from_dict(cls, doc: object) -> Envelope:
        """Build from the parsed JSON envelope.

        Raises:
            InvalidEnvelope: with a one-line reason.
        """
        if not isinstance(doc, dict) or set(doc) != {"payload", "payloadType", "signatures"}:
            raise InvalidEnvelope(
                "DSSE envelope: want exactly the fields payload, payloadType, signatures"
            )
        ptype = doc["payloadType"]
        if not isinstance(ptype, str) or len(ptype.encode()) > MAX_PAYLOAD_TYPE:
            raise InvalidEnvelope(
                f"DSSE envelope: payloadType must be a string of at most {MAX_PAYLOAD_TYPE} bytes"
            )
        sigs = doc["signatures"]
        if not isinstance(sigs, list) or not 1 <= len(sigs) <= MAX_SIGNATURES:
            raise InvalidEnvelope(f"DSSE envelope: want a list of 1 to {MAX_SIGNATURES} signatures")
        payload = b64decode(doc["payload"], "DSSE envelope payload")
        return cls(
            ptype,
            payload,
            tuple(
                Signature.from_dict(s, f"DSSE envelope signature {i}") for i, s in enumerate(sigs)
            ),
        )

    def sign(self, key: PrivateKey) -> Envelope:
        """This envelope with a signature by `key` (replacing one with the same keyid)."""
        kid = key_id(key.public_key())
        others = tuple(s for s in self.signatures if s.keyid != kid)
        return attrs.evolve(self, signatures=(*others, Signature(sign(key, self.pae()), kid)))


def load_envelope(data: bytes) -> Envelope:
    """Parse envelope bytes strictly (see the module docstring).

    Raises:
        InvalidEnvelope: with a one-line reason.
    """
    doc = parse_canonical(data) if len(data) <= MAX_ENVELOPE else None  # as `encode` writes
    if doc is None:
        doc = load_json(data, "DSSE envelope", limit=MAX_ENVELOPE, error=InvalidEnvelope)
    return Envelope.from_dict(doc)


def sign_envelope(payload_type: str, payload: bytes, keys: Iterable[PrivateKey]) -> Envelope:
    """A new envelope over `payload`, signed by each of `keys` in turn."""
    env = Envelope(payload_type, payload)
    for key in keys:
        env = env.sign(key)
    return env


@attrs.frozen
class Verification:
    """What `verify_envelope` found: the names of the distinct keys whose signature
    holds, and one line per signature that did not count."""

    verified: frozenset[str]
    problems: tuple[str, ...]


def verify_envelope(envelope: Envelope, keys: Mapping[str, PublicKey]) -> Verification:
    """Check every signature of `envelope` against the trusted `keys`, by name.

    A name is what a signature's `keyid` must say to select that key (for trust roots,
    `keys.key_id`). Returns the names of the DISTINCT keys with a signature that
    verifies over `envelope.pae()`; see the module docstring for what is reported.

    Raises:
        ValueError: two names for one key (the caller's bug: it would count twice).
    """
    ids = {name: key_id(k) for name, k in keys.items()}
    if len(set(ids.values())) != len(ids):
        raise ValueError("the same public key appears under two names")
    message = envelope.pae()
    verified: set[str] = set()
    problems: list[str] = []

    def accept(i: int, name: str) -> None:
        if name in verified:
            problems.append(f"signature {i}: a second signature by key {name}, not counted twice")
        else:
            verified.add(name)

    for i, s in enumerate(envelope.signatures):
        if s.keyid is not None:
            key = keys.get(s.keyid)
            if key is None:
                problems.append(f"signature {i}: unknown key id {s.keyid}")
            elif verify(key, s.sig, message):
                accept(i, s.keyid)
            else:
                problems.append(f"signature {i}: by key {s.keyid}, does not verify")
            continue
        name = next((n for n, k in keys.items() if verify(k, s.sig, message)), None)
        if name is None:
            problems.append(f"signature {i}: no keyid, and no trusted key verifies it")
        else:
            accept(i, name)
    return Verification(frozenset(verified), tuple(problems))
