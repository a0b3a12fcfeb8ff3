"""Interop with the field's own code: securesystemslib's DSSE verifies our envelopes,
and ours verifies securesystemslib's, for both key kinds."""

from __future__ import annotations

import json

import pytest
from attest.signers import signer, trust_of
from securesystemslib.dsse import Envelope as SslibEnvelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer import CryptoSigner, SSlibKey

from promote.attest.dsse import load_envelope, sign_envelope
from promote.attest.keys import PrivateKey, key_id, new_key
from promote.attest.statement import CHECK_PREDICATE, PAYLOAD_TYPE, Statement, Subject
from promote.attest.trust import verify_statement

STATEMENT = Statement(
    (Subject("app.txt", (("blake3", "cd" * 32), ("sha256", "ab" * 32))),),
    CHECK_PREDICATE,
    {"status": "pass"},
).encode()


def _sslib_key(key: PrivateKey) -> SSlibKey:
    """Their view of our key, under our key id (their default id is another hash)."""
    return SSlibKey.from_crypto(key.public_key(), keyid=key_id(key.public_key()))


def test_securesystemslib_verifies_our_envelopes(kind: str) -> None:
    key = new_key(kind)
    data = sign_envelope(PAYLOAD_TYPE, STATEMENT, [key]).encode()
    theirs = SslibEnvelope.from_dict(json.loads(data))
    assert theirs.payload == STATEMENT and theirs.payload_type == PAYLOAD_TYPE
    accepted = theirs.verify([_sslib_key(key)], 1)
    assert set(accepted) == {key_id(key.public_key())}
    # and they refuse it under another key
    with pytest.raises(VerificationError):
        theirs.verify([_sslib_key(new_key(kind))], 1)


def test_we_verify_securesystemslib_envelopes(kind: str) -> None:
    key = new_key(kind)
    theirs = SslibEnvelope(STATEMENT, PAYLOAD_TYPE, {})
    theirs.sign(CryptoSigner(key, _sslib_key(key)))
    env = load_envelope(json.dumps(theirs.to_dict()).encode())
    verified = verify_statement(env, trust_of(signer("ci", ["checker"], key)), "checker")
    assert verified.result.signed == {"ci"}
    assert verified.statement.predicate_type == CHECK_PREDICATE
    assert verified.statement.encode() == STATEMENT


def test_their_two_signatures_meet_our_threshold_of_two() -> None:
    a, b = new_key("ed25519"), new_key("ecdsa-p256")
    theirs = SslibEnvelope(STATEMENT, PAYLOAD_TYPE, {})
    for k in (a, b):
        theirs.sign(CryptoSigner(k, _sslib_key(k)))
    trust = trust_of(signer("a", ["checker"], a), signer("b", ["checker"], b), checker=2)
    env = load_envelope(json.dumps(theirs.to_dict()).encode())
    assert verify_statement(env, trust, "checker").result.signed == {"a", "b"}
