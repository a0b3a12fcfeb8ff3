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

Every promote loads the trust roots' keys and the runner's key, and importing
`cryptography.hazmat.primitives.serialization` costs about 13 ms of CPU, a tenth of a
small promote. So the usual forms, one canonical PEM block (64-character base64 lines,
`\n` line ends) holding the exact DER of an Ed25519 or uncompressed P-256 public key,
or of an Ed25519 PKCS#8 private key, are read from their fixed DER prefixes and built
with the key classes' own constructors (which check a P-256 point is on the curve);
anything else goes to cryptography's PEM parser, which decides and words the error.
tests/test_fast_trust_schema.py compares the two on generated and mutated keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
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
#: The DER before the key's bytes: SubjectPublicKeyInfo of Ed25519 (RFC 8410) and of
#: an uncompressed P-256 point (RFC 5480), PKCS#8 v1 of an Ed25519 seed (RFC 8410).
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_P256_SPKI = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
_ED25519_PKCS8 = bytes.fromhex("302e020100300506032b657004220420")


def key_kind(key: PrivateKey | PublicKey) -> KeyKind:
    """`ed25519` or `ecdsa-p256`."""
    if isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        return "ed25519"
    return "ecdsa-p256"


def key_id(key: PublicKey) -> str:
    """The hex SHA-256 of the DER SubjectPublicKeyInfo of `key`."""
    return hashlib.sha256(_spki(key)).hexdigest()


def _spki(key: PublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo of `key`, as `public_bytes` writes it."""
    if isinstance(key, Ed25519PublicKey):
        return _ED25519_SPKI + key.public_bytes_raw()
    if isinstance(key.curve, ec.SECP256R1):
        n = key.public_numbers()
        return _P256_SPKI + b"\x04" + n.x.to_bytes(32, "big") + n.y.to_bytes(32, "big")
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem_der(data: bytes, label: bytes) -> bytes | None:
    """The DER of `data` if it is exactly one PEM block of `label` in the canonical form
    (64-character lines of canonical base64, `\n` after each line), else None."""
    begin, end = b"-----BEGIN " + label + b"-----\n", b"-----END " + label + b"-----\n"
    if not (data.startswith(begin) and data.endswith(end)) or len(data) > 4096:
        return None
    lines = data[len(begin) : -len(end)].split(b"\n")
    if lines.pop() != b"" or any(len(line) != 64 for line in lines[:-1]):
        return None
    text = b"".join(lines)
    try:
        der = base64.b64decode(text, validate=True)
    except binascii.Error:
        return None
    return der if lines and 0 < len(lines[-1]) <= 64 and base64.b64encode(der) == text else None


def _fast_public(data: bytes) -> PublicKey | None:
    """An Ed25519 or P-256 public key in the usual form, else None (ask cryptography)."""
    der = _pem_der(data, b"PUBLIC KEY")
    if der is None:
        return None
    if len(der) == 44 and der.startswith(_ED25519_SPKI):
        return Ed25519PublicKey.from_public_bytes(der[len(_ED25519_SPKI) :])
    if len(der) == 91 and der.startswith(_P256_SPKI) and der[len(_P256_SPKI)] == 4:
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(
                ec.SECP256R1(), der[len(_P256_SPKI) :]
            )
        except ValueError:  # not a point on the curve: cryptography's parser words it
            return None
    return None


def _fast_private(data: bytes) -> PrivateKey | None:
    """An Ed25519 PKCS#8 private key in the usual form, else None (ask cryptography)."""
    der = _pem_der(data, b"PRIVATE KEY")
    if der is not None and len(der) == 48 and der.startswith(_ED25519_PKCS8):
        return Ed25519PrivateKey.from_private_bytes(der[len(_ED25519_PKCS8) :])
    return None


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
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    from cryptography.hazmat.primitives import serialization

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
    fast = _fast_private(data)
    if fast is not None:
        return fast
    from cryptography.hazmat.primitives import serialization

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
    fast = _fast_public(data)
    if fast is not None:
        return fast
    from cryptography.hazmat.primitives import serialization

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
