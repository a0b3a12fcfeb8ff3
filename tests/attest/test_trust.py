"""Trust roots: the document both ways, its schema, and thresholds that count distinct
signers of a role, never a key twice."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from attest.signers import signer, trust_of

from cas.errors import EXIT_INTEGRITY, EXIT_USAGE
from promote.attest.dsse import Envelope, Signature, sign_envelope
from promote.attest.errors import InvalidStatement, InvalidTrust, Untrusted
from promote.attest.keys import PrivateKey, key_id, new_key, public_pem
from promote.attest.statement import CHECK_PREDICATE, PAYLOAD_TYPE, Statement, Subject
from promote.attest.trust import (
    TrustRoots,
    get_verification_result,
    load_trust,
    verify_statement,
)

REPO = Path(__file__).resolve().parents[2]
STATEMENT = Statement(
    (Subject("app.txt", (("sha256", "ab" * 32),)),), CHECK_PREDICATE, {"status": "pass"}
).encode()


def test_the_schema_in_control_is_the_one_the_package_uses() -> None:
    assert (REPO / "control/promote/trust.schema.json").read_bytes() == (
        REPO / "promote/data/trust.schema.json"
    ).read_bytes()


def test_from_dict_and_to_dict_are_exact_inverses(ed: PrivateKey, ec: PrivateKey) -> None:
    trust = trust_of(
        signer("ci", ["checker", "runner"], ed, ec),
        signer("ann", ["admin"], ec_ := new_key("ecdsa-p256")),
        admin=1,
    )
    doc = trust.to_dict()
    assert TrustRoots.from_dict(doc).to_dict() == doc
    assert load_trust(json.dumps(doc).encode()) == trust
    assert load_trust(trust.encode()).to_dict() == doc
    assert doc["signers"][0]["keys"][0]["keyid"] == key_id(ed.public_key())
    assert trust.holders("checker") == {"ci"} and trust.holders("admin") == {"ann"}
    assert set(trust.keys) == {key_id(k.public_key()) for k in (ed, ec, ec_)}


def _doc(trust: TrustRoots, **over: Any) -> dict[str, Any]:
    d = trust.to_dict()
    d.update(over)
    return d


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(extra=1), "do not match their schema"),
        (lambda d: d.update(schema="promote-trust/v2"), "do not match their schema"),
        (lambda d: d["roles"].pop("admin"), "do not match their schema"),
        (lambda d: d["roles"]["checker"].update(threshold=0), "do not match their schema"),
        (lambda d: d["signers"][0].update(id="Not OK"), "do not match their schema"),
        (lambda d: d["signers"][0].update(roles=["auditor"]), "do not match their schema"),
        (lambda d: d["signers"][0].update(keys=[]), "do not match their schema"),
        (lambda d: d["signers"][0]["keys"][0].update(keyid="0" * 64), "is not the key's id"),
        (
            lambda d: d["signers"][0]["keys"][0].update(
                public_key="-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
            ),
            "not a valid PEM public key",
        ),
        (lambda d: d["signers"].append(dict(d["signers"][0])), "signer 'ci' is listed twice"),
        (
            lambda d: d["signers"].append({**d["signers"][0], "id": "mallory"}),
            "is listed also under 'ci'",
        ),
        (
            lambda d: d["signers"][0]["keys"].append(d["signers"][0]["keys"][0]),
            "is listed twice",
        ),
    ],
)
def test_malformed_trust_roots_are_refused(ed: PrivateKey, edit: Any, message: str) -> None:
    doc = trust_of(signer("ci", ["checker"], ed)).to_dict()
    edit(doc)
    with pytest.raises(InvalidTrust, match=message) as e:
        load_trust(json.dumps(doc).encode())
    assert e.value.exit_code == EXIT_USAGE
    assert "\n" not in str(e.value)


def test_a_key_from_another_curve_in_trust_is_refused(ed: PrivateKey) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    pem = p384.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    doc = trust_of(signer("ci", ["checker"], ed)).to_dict()
    doc["signers"][0]["keys"] = [{"keyid": "0" * 64, "public_key": pem}]
    with pytest.raises(InvalidTrust, match="want P-256"):
        load_trust(json.dumps(doc).encode())


def test_threshold_counts_distinct_signers_of_the_role(kind: str) -> None:
    alice, bob, carol = new_key(kind), new_key(kind), new_key("ed25519")
    trust = trust_of(
        signer("alice", ["checker"], alice),
        signer("bob", ["checker"], bob),
        signer("carol", ["builder"], carol),
        checker=2,
    )
    both = sign_envelope(PAYLOAD_TYPE, STATEMENT, [alice, bob])
    r = get_verification_result(both, trust, "checker")
    assert (r.verified, r.signed, r.unsigned, r.problems) == (True, {"alice", "bob"}, set(), ())
    verified = verify_statement(both, trust, "checker")
    assert verified.statement.predicate_type == CHECK_PREDICATE
    assert verified.result.signed == {"alice", "bob"}

    # one checker and a builder: the builder is named, not counted
    mixed = sign_envelope(PAYLOAD_TYPE, STATEMENT, [alice, carol])
    r = get_verification_result(mixed, trust, "checker")
    assert not r.verified
    assert (r.signed, r.unsigned, r.other_roles) == ({"alice"}, {"bob"}, {"carol"})
    with pytest.raises(Untrusted, match="1 of 2 distinct signers of role checker") as e:
        verify_statement(mixed, trust, "checker")
    assert e.value.exit_code == EXIT_INTEGRITY
    assert "signed outside the role by carol" in str(e.value)
    # any trusted signer, with no role asked for
    assert get_verification_result(mixed, trust, None).signed == {"alice", "carol"}


def test_one_key_twice_never_meets_a_threshold_of_two(ed: PrivateKey) -> None:
    bob = new_key("ed25519")
    trust = trust_of(signer("alice", ["checker"], ed), signer("bob", ["checker"], bob), checker=2)
    env = sign_envelope(PAYLOAD_TYPE, STATEMENT, [ed])
    twice = Envelope(env.payload_type, env.payload, env.signatures * 2)
    r = get_verification_result(twice, trust, "checker")
    assert not r.verified and r.signed == {"alice"}
    assert r.problems == (
        f"signature 1: a second signature by key {key_id(ed.public_key())}, not counted twice",
    )
    with pytest.raises(Untrusted, match="not counted twice"):
        verify_statement(twice, trust, "checker")


def test_two_keys_of_one_signer_count_once(ed: PrivateKey, ec: PrivateKey) -> None:
    trust = trust_of(
        signer("alice", ["checker"], ed, ec), signer("bob", ["checker"], new_key()), checker=2
    )
    r = get_verification_result(sign_envelope(PAYLOAD_TYPE, STATEMENT, [ed, ec]), trust, "checker")
    assert not r.verified and r.signed == {"alice"} and r.unsigned == {"bob"}


def test_one_key_under_two_signers_cannot_be_loaded(ed: PrivateKey) -> None:
    with pytest.raises(InvalidTrust, match="listed also under 'alice'"):
        trust_of(signer("alice", ["checker"], ed), signer("alias", ["checker"], ed), checker=2)


def test_unknown_keys_and_bad_signatures_are_explained(ed: PrivateKey) -> None:
    trust = trust_of(signer("alice", ["checker"], ed))
    stranger = new_key("ecdsa-p256")
    env = sign_envelope(PAYLOAD_TYPE, STATEMENT, [stranger])
    with pytest.raises(Untrusted, match=f"unknown key id {key_id(stranger.public_key())}"):
        verify_statement(env, trust, "checker")
    forged = Envelope(PAYLOAD_TYPE, STATEMENT, (Signature(b"\x01" * 64, key_id(ed.public_key())),))
    with pytest.raises(Untrusted, match="does not verify"):
        verify_statement(forged, trust, "checker")
    # signed over the statement, then the payload changed: the payload is what is checked
    tampered = Envelope(
        PAYLOAD_TYPE,
        STATEMENT.replace(b"pass", b"fail"),
        sign_envelope(PAYLOAD_TYPE, STATEMENT, [ed]).signatures,
    )
    with pytest.raises(Untrusted, match="does not verify"):
        verify_statement(tampered, trust, "checker")


def test_trusted_but_not_a_statement(ed: PrivateKey) -> None:
    from promote.attest.errors import InvalidEnvelope

    trust = trust_of(signer("alice", ["checker"], ed))
    with pytest.raises(InvalidEnvelope, match="payloadType"):
        verify_statement(sign_envelope("application/json", STATEMENT, [ed]), trust, "checker")
    with pytest.raises(InvalidStatement, match="want exactly the fields"):
        verify_statement(sign_envelope(PAYLOAD_TYPE, b"{}", [ed]), trust, "checker")


def test_the_public_pem_text_is_kept_as_written(ed: PrivateKey) -> None:
    doc = trust_of(signer("ci", ["checker"], ed)).to_dict()
    crlf = public_pem(ed.public_key()).decode().replace("\n", "\r\n")
    doc["signers"][0]["keys"][0]["public_key"] = crlf
    assert load_trust(json.dumps(doc).encode()).to_dict() == doc
