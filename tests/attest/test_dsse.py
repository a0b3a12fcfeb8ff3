"""DSSE v1: the spec's PAE examples and test vectors, round trips, strict parsing, and
verification that counts distinct keys over the exact payload bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec as crypto_ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from cas.errors import EXIT_USAGE
from promote.attest.dsse import (
    MAX_ENVELOPE,
    MAX_SIGNATURES,
    Envelope,
    Signature,
    b64decode,
    load_envelope,
    pae,
    sign_envelope,
    verify_envelope,
)
from promote.attest.errors import InvalidEnvelope
from promote.attest.keys import PrivateKey, key_id, new_key, sign, verify
from promote.canonical import canonical

VECTORS = json.loads((Path(__file__).parent / "dsse_vectors.json").read_text(encoding="utf-8"))
TYPE = "application/vnd.in-toto+json"


def test_pae_of_the_protocol_example() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_utf8_bytes_and_signs_an_empty_body_with_a_trailing_space() -> None:
    assert pae("t\u00e4", b"") == b"DSSEv1 3 t\xc3\xa4 0 "
    assert pae("", b"x y") == b"DSSEv1 0  3 x y"


def test_the_protocol_ecdsa_example_verifies_over_our_pae() -> None:
    """protocol.md's example envelope: ECDSA P-256, signature as raw r || s."""
    x = 46950820868899156662930047687818585632848591499744589407958293238635476079160
    y = 5640078356564379163099075877009565129882514886557779369047442380624545832820
    public = crypto_ec.EllipticCurvePublicNumbers(x, y, crypto_ec.SECP256R1()).public_key()
    env = load_envelope(
        b'{"payload": "aGVsbG8gd29ybGQ=", "payloadType": "http://example.com/HelloWorld",'
        b' "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUi'
        b'HqJPcIAriEGAHTVeCUjW2JIZA=="}]}'
    )
    raw = env.signatures[0].sig
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    assert verify(public, der, env.pae())
    assert not verify(public, der, pae(env.payload_type, b"hello world!"))


def _vector_key(name: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTORS["keys"][name]["seed"]))


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: v["id"])
def test_dsse_spec_vectors(vector: dict[str, Any]) -> None:
    env = load_envelope(json.dumps(vector["envelope"]).encode())
    covered = bytes.fromhex(vector["pae"])  # what the signatures were made over
    assert (env.pae() == covered) == (vector["id"] != "payload-type-swapped")
    keys = {n: _vector_key(n).public_key() for n in vector["trustedKeys"]}
    result = verify_envelope(env, keys)
    accepted = (
        len(result.verified) >= vector["threshold"]
        and env.payload_type in vector["supportedPayloadTypes"]
    )
    assert accepted == (vector["expect"] == "accept")
    # our signer makes the very same (deterministic Ed25519) signatures
    ours = {sign(_vector_key(n), covered) for n in vector["trustedKeys"]}
    assert {s.sig for s in env.signatures} <= ours


def test_one_key_twice_counts_once_and_is_reported() -> None:
    v = next(v for v in VECTORS["vectors"] if v["id"] == "threshold-two-one-key-twice")
    env = load_envelope(json.dumps(v["envelope"]).encode())
    result = verify_envelope(env, {n: _vector_key(n).public_key() for n in ("A", "B")})
    assert result.verified == {"A"}
    assert result.problems == ("signature 1: a second signature by key A, not counted twice",)


def test_round_trip_both_kinds(kind: str) -> None:
    key = new_key(kind)
    env = sign_envelope(TYPE, b'{"x": 1}', [key])
    data = env.encode()
    assert data == canonical(json.loads(data))
    back = load_envelope(data)
    assert back == env
    assert back.signatures[0].keyid == key_id(key.public_key())
    assert verify_envelope(back, {key_id(key.public_key()): key.public_key()}).verified == {
        key_id(key.public_key())
    }


def test_signing_again_with_one_key_replaces_its_signature(ed: PrivateKey) -> None:
    env = sign_envelope(TYPE, b"p", [ed, ed])
    assert len(env.signatures) == 1


def _keys(*ks: PrivateKey) -> dict[str, Any]:
    return {key_id(k.public_key()): k.public_key() for k in ks}


def test_a_signature_over_other_bytes_does_not_count(ed: PrivateKey) -> None:
    kid = key_id(ed.public_key())
    good = sign_envelope(TYPE, b"payload", [ed])
    # the raw payload signed, not its PAE
    raw = Envelope(TYPE, b"payload", (Signature(sign(ed, b"payload"), kid),))
    # the payload swapped after signing
    swapped = Envelope(TYPE, b"payload!", good.signatures)
    # the type swapped after signing
    retyped = Envelope("application/json", b"payload", good.signatures)
    for env in (raw, swapped, retyped):
        result = verify_envelope(env, _keys(ed))
        assert result.verified == frozenset()
        assert result.problems == (f"signature 0: by key {kid}, does not verify",)


def test_an_unknown_key_id_is_reported_not_tried(ed: PrivateKey) -> None:
    other = new_key("ed25519")
    env = sign_envelope(TYPE, b"p", [other])
    result = verify_envelope(env, _keys(ed))
    assert result.verified == frozenset()
    assert result.problems == (f"signature 0: unknown key id {key_id(other.public_key())}",)
    # a correct signature whose keyid names another key is not counted either
    relabelled = Envelope(TYPE, b"p", (Signature(sign(ed, env.pae()), "someone-else"),))
    assert verify_envelope(relabelled, _keys(ed)).verified == frozenset()


def test_a_signature_without_keyid_is_tried_against_every_key(
    ed: PrivateKey, ec: PrivateKey
) -> None:
    env = Envelope(TYPE, b"p")
    env = Envelope(TYPE, b"p", (Signature(sign(ec, env.pae())),))
    assert verify_envelope(env, _keys(ed, ec)).verified == {key_id(ec.public_key())}


def test_a_key_under_two_names_is_refused(ed: PrivateKey) -> None:
    env = sign_envelope(TYPE, b"p", [ed])
    with pytest.raises(ValueError, match="two names"):
        verify_envelope(env, {"a": ed.public_key(), "b": ed.public_key()})


def _env(**over: Any) -> bytes:
    doc: dict[str, Any] = {
        "payload": "cA==",
        "payloadType": TYPE,
        "signatures": [{"keyid": "k", "sig": base64.b64encode(b"s" * 64).decode()}],
    }
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff", "not UTF-8"),
        (
            b'{"payload": "cA==", "payload": "cQ==", "payloadType": "t", "signatures": []}',
            "duplicate key",
        ),
        (b"[]", "want exactly the fields"),
        (_env(payload=None), "want exactly the fields"),
        (_env(extra=1), "want exactly the fields"),
        (_env(payloadType=1), "payloadType must be a string"),
        (_env(payloadType="t" * 300), "payloadType must be a string"),
        (_env(signatures=[]), "want a list of 1 to"),
        (_env(signatures={"sig": "cA=="}), "want a list of 1 to"),
        (_env(signatures=[{"sig": "cA=="}] * (MAX_SIGNATURES + 1)), "want a list of 1 to"),
        (_env(signatures=[{"keyid": "k"}]), "want {'keyid'?, 'sig'}"),
        (_env(signatures=[{"sig": "cA==", "other": 1}]), "want {'keyid'?, 'sig'}"),
        (_env(signatures=[{"sig": "cA==", "keyid": 7}]), "keyid must be a string"),
        (_env(signatures=[{"sig": ""}]), "want 1 to 512 signature bytes"),
        (_env(signatures=[{"sig": base64.b64encode(b"s" * 513).decode()}]), "want 1 to 512"),
        (_env(payload="cA"), "not valid padded base64"),
        (_env(payload="c A=="), "not valid padded base64"),
        (_env(payload="cB=="), "not canonical base64"),
        (_env(payload="+_8="), "mixes the standard and URL-safe"),
        (_env(payload=7), "want a base64 string"),
        (b"{" * 100 + b"}" * 100, "nested deeper than"),
        (b" " * (MAX_ENVELOPE + 1), "larger than"),
    ],
)
def test_malformed_envelopes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidEnvelope, match=message.replace("?", r"\?")) as e:
        load_envelope(data)
    assert e.value.exit_code == EXIT_USAGE
    assert "\n" not in str(e.value)


def test_base64_either_alphabet_one_meaning() -> None:
    assert b64decode("-_-_Pj8=", "x") == b64decode("+/+/Pj8=", "x") == b"\xfb\xff\xbf>?"
    assert b64decode("", "x") == b""
