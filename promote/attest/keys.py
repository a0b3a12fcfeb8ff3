"""Signing keys: Ed25519 and ECDSA P-256, in PEM.

Files: a private key is unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`, as
`openssl genpkey` writes), a public key SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC
KEY-----`, as `openssl pkey -pubout` writes). Any other algorithm or curve, an
encrypted key or another PEM label is refused with `InvalidKey` (exit 2).

Key id: the lowercase hex SHA-256 of the key's DER SubjectPublicKeyInfo, 64 digits
(`openssl pkey -pubin -in K.pub -outform DER | sha256sum`). It depends on the key
alone, so one key has one id wherever it is listed; a DSSE signature names its key by
this id (`keyid`).

Signatures: Ed25519 (RFC 8032, pure) over the message; ECDSA P-256 with SHA-256 over
the message, DER-encoded (ASN.1 `SEQUENCE {r, s}`, as pyca/cryptography, OpenSSL,
securesystemslib and sigstore write it).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from promote.attest.errors import InvalidKey

__all__ = [
    "KINDS",
    "KeyKind",
    "PrivateKey",
    "PublicKey",
    "key_id",
    "key_kind",
    "load_private_key",
    "load_private_pem",
    "load_public_key",
    "load_public_pem",
    "new_key",
    "private_pem",
    "public_pem",
    "public_path",
    "sign",
    "verify",
    "write_key_pair",
]

KeyKind = Literal["ed25519", "ecdsa-p256"]
KINDS: tuple[KeyKind, ...] = ("ed25519", "ecdsa-p256")
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey

#: A PEM key is a few hundred bytes; anything this big is not one.
MAX_KEY_FILE = 64 << 10
_PRIVATE_LABEL = b"-----BEGIN PRIVATE KEY-----"
_PUBLIC_LABEL = b"-----BEGIN PUBLIC KEY-----"


def key_kind(key: PrivateKey | PublicKey) -> KeyKind:
    """`ed25519` or `ecdsa-p256`."""
    if isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        return "ed25519"
    return "ecdsa-p256"


def key_id(key: PublicKey) -> str:
    """The hex SHA-256 of the DER SubjectPublicKeyInfo of `key`."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def new_key(kind: str = "ed25519") -> PrivateKey:
    """A fresh private key of `kind` (`ed25519` or `ecdsa-p256`).

    Raises:
        InvalidKey: an unknown kind.
    """
    if kind == "ed25519":
        return Ed25519PrivateKey.generate()
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    raise InvalidKey(f"unknown key kind {kind!r}: want one of {', '.join(KINDS)}")


def private_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _supported(key: object, what: str) -> None:
    if isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        return
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if isinstance(key.curve, ec.SECP256R1):
            return
        raise InvalidKey(f"{what}: ECDSA on curve {key.curve.name}, want P-256 (secp256r1)")
    raise InvalidKey(f"{what}: a {type(key).__name__}, want an Ed25519 or ECDSA P-256 key")


def load_private_pem(data: bytes, what: str = "private key") -> PrivateKey:
    """Parse an unencrypted PKCS#8 PEM Ed25519 or ECDSA P-256 private key.

    Raises:
        InvalidKey: anything else, in one line.
    """
    if not data.lstrip().startswith(_PRIVATE_LABEL):
        raise InvalidKey(f"{what}: not a PKCS#8 PEM private key (want '{_PRIVATE_LABEL.decode()}')")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidKey(f"{what}: encrypted, want an unencrypted PKCS#8 key") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidKey(f"{what}: not a valid PEM private key: {_first_line(e)}") from None
    _supported(key, what)
    assert isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return key


def load_public_pem(data: bytes, what: str = "public key") -> PublicKey:
    """Parse a SubjectPublicKeyInfo PEM Ed25519 or ECDSA P-256 public key.

    Raises:
        InvalidKey: anything else, in one line.
    """
    if not data.lstrip().startswith(_PUBLIC_LABEL):
        raise InvalidKey(f"{what}: not a PEM public key (want '{_PUBLIC_LABEL.decode()}')")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise InvalidKey(f"{what}: not a valid PEM public key: {_first_line(e)}") from None
    _supported(key, what)
    assert isinstance(key, Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return key


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _read(path: Path, what: str) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as e:
        raise InvalidKey(f"{what} {path}: {e.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise InvalidKey(f"{what} {path}: larger than {MAX_KEY_FILE} bytes, not a key")
    return data


def load_private_key(path: Path) -> PrivateKey:
    """The private key in the PEM file `path` (see `load_private_pem`)."""
    return load_private_pem(_read(path, "signing key"), f"signing key {path}")


def load_public_key(path: Path) -> PublicKey:
    """The public key in the PEM file `path` (see `load_public_pem`)."""
    return load_public_pem(_read(path, "public key"), f"public key {path}")


def sign(key: PrivateKey, message: bytes) -> bytes:
    """Ed25519 over `message`, or ECDSA P-256 SHA-256 (DER) over it."""
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def verify(key: PublicKey, signature: bytes, message: bytes) -> bool:
    """Whether `signature` by `key` holds over exactly `message`."""
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def public_path(private: Path) -> Path:
    """Where the public half of `private` goes: `K.pem` -> `K.pub`."""
    return private.with_suffix(".pub")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never replacing a file) with `mode`, write `data`, fsync."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except FileExistsError:
        raise InvalidKey(f"{path}: already exists, not overwriting a key") from None
    except OSError as e:
        raise InvalidKey(f"{path}: {e.strerror}") from None
    try:
        os.fchmod(fd, mode)  # the umask does not get a say on a private key
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as e:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise InvalidKey(f"{path}: {e.strerror}") from None
    os.close(fd)


def write_key_pair(private: Path, key: PrivateKey) -> Path:
    """Write `key` to `private` (PKCS#8 PEM, mode 0600, created with O_EXCL) and its
    public half to `public_path(private)` (mode 0644, O_EXCL). Returns the public path.

    Raises:
        InvalidKey: either file exists already, or cannot be written.
    """
    pub = public_path(private)
    if pub == private:
        raise InvalidKey(f"{private}: name the private key something other than *.pub")
    if pub.exists() or pub.is_symlink():
        raise InvalidKey(f"{pub}: already exists, not overwriting a key")
    _write_new(private, private_pem(key), 0o600)
    try:
        _write_new(pub, public_pem(key.public_key()), 0o644)
    except InvalidKey:
        private.unlink(missing_ok=True)
        raise
    return pub
