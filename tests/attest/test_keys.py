"""Keys: the two kinds, PEM both ways, the key id, and everything else refused."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey

from cas.errors import EXIT_USAGE
from promote.attest.errors import InvalidKey
from promote.attest.keys import (
    PrivateKey,
    key_id,
    key_kind,
    load_private_key,
    load_private_pem,
    load_public_key,
    load_public_pem,
    new_key,
    private_pem,
    public_pem,
    sign,
    verify,
    write_key_pair,
)


def test_pem_round_trip_sign_and_verify(kind: str) -> None:
    key = new_key(kind)
    assert key_kind(key) == kind
    again = load_private_pem(private_pem(key))
    pub = load_public_pem(public_pem(key.public_key()))
    assert key_id(pub) == key_id(again.public_key())
    sig = sign(again, b"message")
    assert verify(pub, sig, b"message")
    assert not verify(pub, sig, b"messagE")
    assert not verify(pub, b"\x00" * len(sig), b"message")
    assert not verify(pub, b"", b"message")


def test_key_id_is_the_sha256_of_the_der_subject_public_key_info(kind: str) -> None:
    pub = new_key(kind).public_key()
    der = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert key_id(pub) == hashlib.sha256(der).hexdigest()
    assert len(key_id(pub)) == 64


def _pkcs8(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(key: object) -> bytes:
    return key.public_key().public_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "curve secp384r1, want P-256"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "curve secp256k1, want P-256"),
        (lambda: rsa.generate_private_key(65537, 2048), "want an Ed25519 or ECDSA P-256"),
        (Ed448PrivateKey.generate, "want an Ed25519 or ECDSA P-256"),
    ],
    ids=["p384", "secp256k1", "rsa", "ed448"],
)
def test_other_algorithms_and_curves_are_refused(make: object, message: str) -> None:
    key = make()  # type: ignore[operator]
    with pytest.raises(InvalidKey, match=message) as e:
        load_private_pem(_pkcs8(key))
    assert e.value.exit_code == EXIT_USAGE
    with pytest.raises(InvalidKey, match=message):
        load_public_pem(_spki(key))


def test_other_formats_are_refused(ed: PrivateKey) -> None:
    encrypted = ed.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(InvalidKey, match="not a PKCS#8 PEM private key"):
        load_private_pem(encrypted)  # BEGIN ENCRYPTED PRIVATE KEY
    sec1 = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    with pytest.raises(InvalidKey, match="not a PKCS#8 PEM private key"):
        load_private_pem(sec1)  # BEGIN EC PRIVATE KEY
    with pytest.raises(InvalidKey, match="not a PKCS#8 PEM private key"):
        load_private_pem(public_pem(ed.public_key()))
    with pytest.raises(InvalidKey, match="not a PEM public key"):
        load_public_pem(private_pem(ed))
    with pytest.raises(InvalidKey, match="not a valid PEM public key"):
        load_public_pem(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    with pytest.raises(InvalidKey, match="unknown key kind 'rsa'"):
        new_key("rsa")


def test_write_key_pair_is_private_exclusive_and_loadable(tmp_path: Path, kind: str) -> None:
    key = new_key(kind)
    old = os.umask(0)
    try:
        pub = write_key_pair(tmp_path / "signer.pem", key)
    finally:
        os.umask(old)
    assert pub == tmp_path / "signer.pub"
    assert stat.S_IMODE((tmp_path / "signer.pem").stat().st_mode) == 0o600
    assert key_id(load_private_key(tmp_path / "signer.pem").public_key()) == key_id(
        load_public_key(pub)
    )
    before = (tmp_path / "signer.pem").read_bytes()
    with pytest.raises(InvalidKey, match="already exists"):
        write_key_pair(tmp_path / "signer.pem", new_key(kind))
    assert (tmp_path / "signer.pem").read_bytes() == before
    # an existing .pub stops it before the private key is written
    (tmp_path / "b.pub").write_text("x")
    with pytest.raises(InvalidKey, match=r"b\.pub: already exists"):
        write_key_pair(tmp_path / "b.pem", key)
    assert not (tmp_path / "b.pem").exists()


def test_unreadable_or_huge_key_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey, match="No such file"):
        load_private_key(tmp_path / "absent.pem")
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * (1 << 17))
    with pytest.raises(InvalidKey, match="larger than"):
        load_public_key(big)
