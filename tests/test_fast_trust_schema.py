"""The trust roots' fast schema check (promote.attest.trust._trust_ok) against
jsonschema itself: on generated valid trust documents and on mutations of them, the
fast check accepts exactly what trust.schema.json accepts, except a threshold written
as a float (1.0 is an integer to JSON Schema), which it leaves to jsonschema. It never
accepts what the schema refuses, and a refusal is still worded by jsonschema.

The same for the keys' fast PEM reading (promote.attest.keys._fast_public and
_fast_private) against cryptography's PEM parser: a key it reads is the key
cryptography reads from the same bytes, with the same key id."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mutations import has_float, mutated

from promote.attest import keys
from promote.attest.errors import InvalidTrust
from promote.attest.trust import ROLES, _trust_ok, _validator, load_trust
from promote.demo_keys import write_demo_trust

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
KEYID = "ab" * 32

ids = st.from_regex(r"\A[a-z0-9][a-z0-9._-]{0,63}\Z")
keyids = st.binary(min_size=32, max_size=32).map(bytes.hex)
pems = st.text(max_size=40).map(lambda t: "-----BEGIN PUBLIC KEY-----" + t)
thresholds = st.sampled_from([1, 2, 256]) | st.integers(1, 256)


@st.composite
def trust_docs(draw: st.DrawFn) -> dict[str, Any]:
    signers = [
        {
            "id": draw(ids),
            "roles": draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=4, unique=True)),
            "keys": [
                {"keyid": draw(keyids), "public_key": draw(pems)}
                for _ in range(draw(st.integers(1, 3)))
            ],
        }
        for _ in range(draw(st.integers(0, 3)))
    ]
    roles = {r: {"threshold": draw(thresholds)} for r in ROLES}
    return {"schema": "promote-trust/v1", "signers": signers, "roles": roles}


#: What a mutation may put in place of a value: each is wrong somewhere, right elsewhere.
ODD: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    256,
    257,
    -1,
    "",
    "x",
    "X",
    "a" * 64,
    "a" * 65,
    "ci\n",
    "-ci",
    "ci checker",
    KEYID,
    KEYID + "\n",
    KEYID.upper(),
    KEYID[:-1],
    PEM,
    " " + PEM,
    "-----BEGIN PUBLIC KEY-----" + "A" * 4071,
    "-----BEGIN PUBLIC KEY-----" + "A" * 4070,
    "promote-trust/v1",
    "promote-trust/v2",
    *ROLES,
    "owner",
    [],
    ["builder"],
    ["builder", "builder"],
    ["builder", "checker"],
    [["builder"]],
    [{}],
    {},
    {"threshold": 1},
    {"threshold": 0},
    {"keyid": KEYID, "public_key": PEM},
    {"id": "s", "roles": ["admin"], "keys": [{"keyid": KEYID, "public_key": PEM}]},
    [{"keyid": KEYID, "public_key": PEM}] * 17,
    1.0,  # an integer to jsonschema: the fast check leaves it to jsonschema
    0.5,
]
KEYS = ["schema", "signers", "roles", "id", "keys", "keyid", "public_key", "threshold", "x"]
KEYS += list(ROLES)


def _one(**signer: Any) -> dict[str, Any]:
    s = {"id": "ci", "roles": ["checker"], "keys": [{"keyid": KEYID, "public_key": PEM}]}
    roles = {r: {"threshold": 1} for r in ROLES}
    return {"schema": "promote-trust/v1", "signers": [{**s, **signer}], "roles": roles}


SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(trust_docs())
def test_valid_trust_roots_take_the_fast_path(doc: dict[str, Any]) -> None:
    assert _validator().is_valid(doc)
    assert _trust_ok(doc)


@SETTINGS
@given(mutated(trust_docs(), KEYS, ODD))
@example(_one(id="ci\n"))  # `$` matches before a final newline, in jsonschema too
@example(_one(id="a" * 65))
@example(_one(id="Ci"))
@example(_one(roles=[]))
@example(_one(roles=["checker", "checker"]))
@example(_one(roles=[["checker"]]))
@example(_one(roles=["owner"]))
@example(_one(keys=[]))
@example(_one(keys=[{"keyid": KEYID, "public_key": PEM}] * 17))
@example(_one(keys=[{"keyid": KEYID + "\n", "public_key": PEM}]))
@example(_one(keys=[{"keyid": KEYID.upper(), "public_key": PEM}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": " " + PEM}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": "-----BEGIN PUBLIC KEY-----" + "A" * 4071}]))
@example(_one(keys=[{"keyid": KEYID, "public_key": PEM, "x": 1}]))
@example(_one(x=1))
@example({**_one(), "signers": [_one()["signers"][0]] * 257})
@example({**_one(), "roles": {r: {"threshold": 257} for r in ROLES}})
@example({**_one(), "roles": {r: {"threshold": True} for r in ROLES}})
@example({**_one(), "roles": {r: {"threshold": 1} for r in ROLES[:3]}})
@example({**_one(), "schema": "promote-trust/v2"})
def test_trust_fast_check_agrees_with_jsonschema(doc: Any) -> None:
    valid = _validator().is_valid(doc)
    fast = _trust_ok(doc)
    assert not fast or valid, "the fast check accepted what the schema refuses"
    if not has_float(doc):
        assert fast == valid


def test_a_float_threshold_is_left_to_jsonschema() -> None:
    doc = {**_one(), "roles": {r: {"threshold": 1.0} for r in ROLES}}
    assert not _trust_ok(doc) and _validator().is_valid(doc)


def test_refusals_are_worded_by_jsonschema() -> None:
    with pytest.raises(InvalidTrust, match="do not match their schema: signers/0/id: 'C i'"):
        load_trust(json.dumps(_one(id="C i")).encode())


def test_real_trust_roots_load_without_jsonschema(tmp_path: Path) -> None:
    """The trust roots `promote init` writes pass the fast check: loading them does not
    import jsonschema (its import was a good part of a small promote's start-up)."""
    write_demo_trust(tmp_path)
    code = (
        "import sys; from promote.attest.trust import TRUST_PATH, load_trust;"
        f"load_trust(open({str(tmp_path)!r} + '/' + TRUST_PATH, 'rb').read());"
        "print('jsonschema' in sys.modules,"
        " 'cryptography.hazmat.primitives.serialization' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "False False\n"


def _pem(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode()
    body = "".join(b64[i : i + 64] + "\n" for i in range(0, len(b64), 64))
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _spki(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
private_keys = st.binary(min_size=32, max_size=32).map(Ed25519PrivateKey.from_private_bytes) | (
    st.integers(1, P256_ORDER - 1).map(lambda n: ec.derive_private_key(n, ec.SECP256R1()))
)
#: DER SubjectPublicKeyInfo: real keys, and the fixed prefixes over arbitrary bytes
#: (Ed25519 bytes that may not be a point, P-256 points that may be off the curve).
public_ders = (
    private_keys.map(lambda k: _spki(k.public_key()))
    | st.binary(min_size=32, max_size=32).map(lambda b: keys._ED25519_SPKI + b)
    | st.binary(min_size=64, max_size=64).map(lambda b: keys._P256_SPKI + b"\x04" + b)
)
private_ders = st.binary(min_size=32, max_size=32).map(lambda b: keys._ED25519_PKCS8 + b)


@st.composite
def mutated_pems(draw: st.DrawFn, ders: st.SearchStrategy[bytes], label: str) -> bytes:
    der = bytearray(draw(ders))
    if draw(st.booleans()):  # a changed DER, canonically encoded
        i = draw(st.integers(0, len(der) - 1))
        der[i] = draw(st.integers(0, 255))
        if draw(st.booleans()):
            del der[draw(st.integers(0, len(der) - 1))]
    pem = bytearray(_pem(label, bytes(der)))
    for _ in range(draw(st.integers(0, 2))):  # and changed PEM text
        i = draw(st.integers(0, len(pem) - 1))
        op = draw(st.sampled_from(["set", "drop", "add"]))
        byte = draw(st.sampled_from(b"A/+=\n\r -z") | st.integers(0, 255))
        if op == "set":
            pem[i] = byte
        elif op == "drop":
            del pem[i]
        else:
            pem.insert(i, byte)
    return bytes(pem)


@SETTINGS
@given(private_keys)
def test_real_keys_take_the_fast_path(key: object) -> None:
    pub = key.public_key()  # type: ignore[attr-defined]
    fast = keys._fast_public(_pem("PUBLIC KEY", _spki(pub)))
    assert fast is not None and _spki(fast) == _spki(pub)
    assert keys.key_id(pub) == hashlib.sha256(_spki(pub)).hexdigest()
    assert keys.public_pem(pub) == _pem("PUBLIC KEY", _spki(pub))
    if isinstance(key, Ed25519PrivateKey):
        got = keys._fast_private(keys.private_pem(key))
        assert isinstance(got, Ed25519PrivateKey)
        assert got.private_bytes_raw() == key.private_bytes_raw()


@SETTINGS
@given(mutated_pems(public_ders, "PUBLIC KEY"))
def test_a_public_key_read_fast_is_the_one_cryptography_reads(pem: bytes) -> None:
    fast = keys._fast_public(pem)
    if fast is not None:
        slow = serialization.load_pem_public_key(pem)
        assert _spki(fast) == _spki(slow)
        assert keys.key_id(fast) == hashlib.sha256(_spki(slow)).hexdigest()


@SETTINGS
@given(mutated_pems(private_ders, "PRIVATE KEY"))
def test_a_private_key_read_fast_is_the_one_cryptography_reads(pem: bytes) -> None:
    fast = keys._fast_private(pem)
    if fast is not None:
        slow = serialization.load_pem_private_key(pem, password=None)
        assert isinstance(slow, Ed25519PrivateKey)
        assert fast.private_bytes_raw() == slow.private_bytes_raw()
