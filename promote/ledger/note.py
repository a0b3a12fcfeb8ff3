"""C2SP signed notes (c2sp.org/signed-note): text signed by one or more named keys.

A signed note is a text ending in a newline, a blank line, then one or more signature
lines, each `— <key name> <base64(4-byte key id || signature)>` and a newline (the em
dash is U+2014). The whole note is UTF-8 with no ASCII control character other than the
newline. The signed bytes are the text, final newline included, blank line excluded.

Two signature types are implemented (the spec asks implementations to support only the
ones they need):

- `0x01`, Ed25519 (RFC 8032) over the note text: what a log signs its checkpoint with;
- `0x04`, the timestamped Ed25519 *cosignature/v1* of c2sp.org/tlog-cosignature: 8 bytes
  of big-endian POSIX time then an Ed25519 signature over
  `cosignature/v1\\ntime <t>\\n` followed by the note text: what a witness signs.

A key is named by its name and a 4-byte key id, `SHA-256(name || 0x0A || type ||
32-byte public key)[:4]`, and written as a *vkey* `<name>+<8 hex id>+<base64(type ||
public key)>`; a private key as `PRIVATE+KEY+<name>+<8 hex id>+<base64(type || seed)>`
(the id is always the public key's). These are the strings golang.org/x/mod/sumdb/note
and transparency-dev/formats read and write.

Verifying (`open_note`): a signature whose (name, id) is a known key must verify, or the
whole note is refused; signatures by unknown keys are ignored but kept; the note holds
when at least `require` distinct known keys verified it.

Limits on hostile input: a note of at most `MAX_NOTE_BYTES`, at most `MAX_SIGNATURES`
signature lines (the spec requires accepting 16; Go's note package stops at 100, as
here), each line at most `MAX_LINE_BYTES`, key names at most 255 bytes (the length the
ML-DSA cosignature encodes them in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence

import attrs
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from promote.attest.errors import InvalidKey
from promote.errors import InvalidDocument
from promote.ledger.merkle import ProofError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "MAX_LINE_BYTES",
    "MAX_NAME_BYTES",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "AmbiguousKey",
    "BadNoteSignature",
    "InvalidNoteKey",
    "MalformedNote",
    "Note",
    "NoteSignature",
    "NoteVerificationError",
    "OpenedNote",
    "Signer",
    "UnverifiedNote",
    "Verifier",
    "b64decode_canonical",
    "b64encode",
    "check_key_name",
    "cosignature_message",
    "cosignature_timestamp",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
    "verifiers",
]

#: Signature type 0x01: Ed25519 over the note text.
ED25519 = 0x01
#: Signature type 0x04: timestamped Ed25519 checkpoint cosignature (tlog-cosignature).
COSIGNATURE_V1 = 0x04
_TYPES = {ED25519: "Ed25519", COSIGNATURE_V1: "Ed25519 cosignature/v1"}

MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
MAX_LINE_BYTES = 8192
MAX_NAME_BYTES = 255
#: The largest timestamp a cosignature may carry (tlog-cosignature: at most 2^63 - 1).
MAX_TIMESTAMP = (1 << 63) - 1

_DASH = "\u2014 "
# Unicode's White_Space property, what Go's unicode.IsSpace tests: a key name has none.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_ED25519_SIG = 64
_TIMESTAMP = 8


# -- errors -------------------------------------------------------------------------


class MalformedNote(InvalidDocument):
    """Bytes that are not a well-formed signed note (exit 2)."""


class InvalidNoteKey(InvalidKey):
    """A vkey, a private key string or a key name that is malformed (exit 2)."""


class AmbiguousKey(InvalidNoteKey):
    """Two different known keys with the same name and key id (exit 2)."""


class NoteVerificationError(ProofError):
    """A note that does not verify (exit 3)."""


class BadNoteSignature(NoteVerificationError):
    """A signature by a known key that does not verify over the note."""


class UnverifiedNote(NoteVerificationError):
    """Fewer known keys than required signed the note."""


# -- names, ids, base64 -------------------------------------------------------------


def check_key_name(name: str, what: str = "key name") -> str:
    """`name`, if it is a valid key name: non-empty, at most 255 bytes of UTF-8, no
    Unicode space, no `+`, no control character.

    Raises:
        InvalidNoteKey: otherwise.
    """
    if not name:
        raise InvalidNoteKey(f"{what}: empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidNoteKey(f"{what}: longer than {MAX_NAME_BYTES} bytes")
    for c in name:
        if c in _SPACES or c == "+" or ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF:
            raise InvalidNoteKey(f"{what} {name!r}: contains {c!r}")
    return name


def _valid_name(name: str) -> bool:
    try:
        check_key_name(name)
    except InvalidNoteKey:
        return False
    return True


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || type || public key)[:4], as a big-endian uint32."""
    h = hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()
    return int.from_bytes(h[:4], "big")


def b64decode_canonical(text: str) -> bytes | None:
    """Standard base64 with padding, canonical (re-encodes to `text`), else None."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == text else None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_seed(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _check_type(sig_type: int) -> int:
    if sig_type not in _TYPES:
        raise InvalidNoteKey(f"signature type 0x{sig_type:02x}: want 0x01 or 0x04 (Ed25519)")
    return sig_type


def cosignature_message(timestamp: int, text: bytes) -> bytes:
    """What a cosignature/v1 signs: `cosignature/v1\\ntime <t>\\n` and the note text.

    Raises:
        MalformedNote: the text has fewer than three lines, or the timestamp is out of range.
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature timestamp {timestamp}: want 0..2^63-1")
    if text.count(b"\n") < 2 or not text.endswith(b"\n"):
        raise MalformedNote("a cosigned note has at least three lines, each ending in a newline")
    return b"cosignature/v1\ntime %d\n" % timestamp + text


# -- signatures and notes -----------------------------------------------------------


@attrs.frozen
class NoteSignature:
    """One signature line: the key's name and id, and the signature bytes after the id."""

    name: str
    key_id: int
    signature: bytes = attrs.field(repr=False)

    def line(self) -> str:
        """`— <name> <base64(id || signature)>` and a newline."""
        return f"{_DASH}{self.name} {b64encode(self.key_id.to_bytes(4, 'big') + self.signature)}\n"

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.key_id)

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """One signature line, without its newline.

        Raises:
            MalformedNote: not `— <valid name> <canonical base64 of at least 5 bytes>`.
        """
        if len(line.encode()) > MAX_LINE_BYTES:
            raise MalformedNote(f"a signature line is longer than {MAX_LINE_BYTES} bytes")
        if not line.startswith(_DASH):
            raise MalformedNote("a signature line must start with an em dash and a space")
        name, _, b64 = line[len(_DASH) :].partition(" ")
        if not _valid_name(name):
            raise MalformedNote(f"signature line: invalid key name {name[:80]!r}")
        raw = b64decode_canonical(b64)
        if raw is None or len(raw) < 5:
            raise MalformedNote(
                f"signature by {name}: not canonical base64 of a key id and a signature"
            )
        return cls(name, int.from_bytes(raw[:4], "big"), raw[4:])


def cosignature_timestamp(sig: NoteSignature) -> int:
    """The time a cosignature/v1 (type 0x04) signature says it was made.

    Raises:
        MalformedNote: the signature is not 8 + 64 bytes, or the time exceeds 2^63 - 1.
    """
    if len(sig.signature) != _TIMESTAMP + _ED25519_SIG:
        raise MalformedNote(f"signature by {sig.name}: not a timestamped Ed25519 cosignature")
    t = int.from_bytes(sig.signature[:_TIMESTAMP], "big")
    if t > MAX_TIMESTAMP:
        raise MalformedNote(f"cosignature by {sig.name}: timestamp beyond 2^63-1")
    return t


@attrs.frozen
class Note:
    """A note's text (ending in a newline) and its signatures, verified or not."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_text(self.text)

    def encode(self) -> bytes:
        """The signed-note bytes: text, blank line, signature lines.

        Raises:
            MalformedNote: no signatures (a signed note has at least one).
        """
        if not self.signatures:
            raise MalformedNote("a signed note needs at least one signature")
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()


def _check_chars(text: str) -> None:
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise MalformedNote(f"the note contains the control character {c!r}")
        if 0xD800 <= ord(c) <= 0xDFFF:
            raise MalformedNote("the note is not valid UTF-8")


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise MalformedNote("the note text must end with a newline")
    _check_chars(text)


def parse_note(data: bytes) -> Note:
    """Split signed-note bytes into text and signature lines, checking only the syntax.

    The text ends at the last blank line; every line after it must be a signature line.

    Raises:
        MalformedNote: with the reason.
    """
    if len(data) > MAX_NOTE_BYTES:
        raise MalformedNote(f"the note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        msg = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedNote("the note is not valid UTF-8") from None
    _check_chars(msg)
    split = msg.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line before the signatures")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs.endswith("\n"):
        raise MalformedNote("the signature lines must end with a newline")
    lines = sigs[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    return Note(text, tuple(NoteSignature.parse_line(line) for line in lines))


# -- keys ---------------------------------------------------------------------------


@attrs.frozen
class Verifier:
    """A public key that checks note signatures of one type, under one name."""

    name: str = attrs.field(validator=lambda _s, _a, v: check_key_name(v))
    sig_type: int = attrs.field(validator=lambda _s, _a, v: _check_type(v))
    public_key: bytes = attrs.field(repr=False)
    key_id: int = attrs.field(init=False)

    @public_key.validator
    def _thirty_two(self, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if len(value) != 32:
            raise InvalidNoteKey(f"key {self.name}: an Ed25519 public key is 32 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(value)
        except ValueError:
            raise InvalidNoteKey(f"key {self.name}: not an Ed25519 public key") from None

    @key_id.default
    def _key_id(self) -> int:
        return key_id(self.name, self.sig_type, self.public_key)

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.key_id)

    def __str__(self) -> str:
        return f"{self.name}+{self.key_id:08x}"

    @classmethod
    def from_public_key(cls, name: str, key: Ed25519PublicKey, sig_type: int = ED25519) -> Verifier:
        return cls(name, sig_type, _raw_public(key))

    def vkey(self) -> str:
        """`<name>+<hex id>+<base64(type || public key)>`."""
        return f"{self}+{b64encode(bytes([self.sig_type]) + self.public_key)}"

    @classmethod
    def parse(cls, vkey: str) -> Verifier:
        """A verifier key string.

        Raises:
            InvalidNoteKey: malformed, of another signature type, or whose id does not
                match its name and key.
        """
        name, _, rest = vkey.partition("+")
        hex_id, _, b64 = rest.partition("+")
        raw = b64decode_canonical(b64)
        shown = vkey[:100]
        if not _valid_name(name) or not _is_hex_id(hex_id) or not raw:
            raise InvalidNoteKey(f"verifier key {shown!r}: want <name>+<8 hex>+<base64>")
        v = cls(name, _check_type(raw[0]), raw[1:])
        if f"{v.key_id:08x}" != hex_id:
            raise InvalidNoteKey(f"verifier key {shown!r}: the key id does not match the key")
        return v

    def cosignature(self) -> Verifier:
        """The cosignature/v1 (0x04) verifier of the same name and public key."""
        return attrs.evolve(self, sig_type=COSIGNATURE_V1)

    def verify(self, text: bytes, sig: NoteSignature) -> bool:
        """Whether `sig` (of this key's name and id) holds over the note text."""
        if sig.key != self.key:
            return False
        message, signature = text, sig.signature
        if self.sig_type == COSIGNATURE_V1:
            try:
                message = cosignature_message(cosignature_timestamp(sig), text)
            except MalformedNote:
                return False
            signature = signature[_TIMESTAMP:]
        if len(signature) != _ED25519_SIG:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def _is_hex_id(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


@attrs.frozen
class Signer:
    """An Ed25519 private key that signs notes (0x01) or cosigns checkpoints (0x04)."""

    name: str = attrs.field(validator=lambda _s, _a, v: check_key_name(v))
    sig_type: int = attrs.field(validator=lambda _s, _a, v: _check_type(v))
    private_key: Ed25519PrivateKey = attrs.field(eq=False, repr=False)

    @classmethod
    def generate(cls, name: str, sig_type: int = ED25519) -> Signer:
        return cls(name, sig_type, Ed25519PrivateKey.generate())

    def verifier(self) -> Verifier:
        return Verifier.from_public_key(self.name, self.private_key.public_key(), self.sig_type)

    @property
    def key_id(self) -> int:
        return self.verifier().key_id

    def skey(self) -> str:
        """`PRIVATE+KEY+<name>+<hex id>+<base64(type || seed)>`: a secret."""
        seed = bytes([self.sig_type]) + _raw_seed(self.private_key)
        return f"PRIVATE+KEY+{self.verifier()}+{b64encode(seed)}"

    @classmethod
    def parse(cls, skey: str) -> Signer:
        """A private key string, as `skey()` writes it.

        Raises:
            InvalidNoteKey: malformed, or the id does not match the key.
        """
        parts = skey.split("+", 4)
        bad = InvalidNoteKey("private key: want PRIVATE+KEY+<name>+<8 hex>+<base64>")
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise bad
        name, hex_id, b64 = parts[2:]
        raw = b64decode_canonical(b64)
        if not _valid_name(name) or not _is_hex_id(hex_id) or not raw or len(raw) != 33:
            raise bad
        s = cls(name, _check_type(raw[0]), Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if f"{s.key_id:08x}" != hex_id:
            raise InvalidNoteKey(f"private key {name}: the key id does not match the key")
        return s

    def cosigner(self) -> Signer:
        """The cosignature/v1 (0x04) signer of the same name and key."""
        return attrs.evolve(self, sig_type=COSIGNATURE_V1)

    def sign(self, text: bytes, timestamp: int | None = None) -> NoteSignature:
        """This key's signature over the note text; a cosigner needs `timestamp`.

        Raises:
            MalformedNote: a cosigner without a timestamp, or a text a cosignature cannot cover.
        """
        try:
            _check_text(text.decode("utf-8"))
        except UnicodeDecodeError:
            raise MalformedNote("the note is not valid UTF-8") from None
        if self.sig_type == COSIGNATURE_V1:
            if timestamp is None:
                raise MalformedNote("a cosignature needs a timestamp")
            sig = timestamp.to_bytes(_TIMESTAMP, "big") + self.private_key.sign(
                cosignature_message(timestamp, text)
            )
        else:
            if timestamp is not None:
                raise MalformedNote("an Ed25519 note signature carries no timestamp")
            sig = self.private_key.sign(text)
        return NoteSignature(self.name, self.key_id, sig)


def sign_note(note: Note, *signers: Signer, timestamp: int | None = None) -> Note:
    """`note` with one more signature per signer, after the signatures it has; an
    existing signature by a signer's key (name and id) is dropped."""
    text = note.text.encode()
    mine = {s.verifier().key for s in signers}
    kept = tuple(s for s in note.signatures if s.key not in mine)
    ts = {COSIGNATURE_V1: timestamp}
    new = tuple(s.sign(text, ts.get(s.sig_type)) for s in signers)
    return Note(note.text, kept + new)


# -- verifying ----------------------------------------------------------------------


@attrs.frozen
class OpenedNote:
    """A note whose known signatures all verified: the text, the signatures by known
    keys (`verified`, first of each key) and those by unknown keys (`unverified`)."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]

    def note(self) -> Note:
        return Note(self.text, self.verified + self.unverified)


def _key_map(known: Iterable[Verifier]) -> dict[tuple[str, int], Verifier]:
    keys: dict[tuple[str, int], Verifier] = {}
    for v in known:
        other = keys.setdefault(v.key, v)
        if other != v:
            raise AmbiguousKey(f"two known keys are both {v}")
    return keys


def open_note(data: bytes | Note, known: Iterable[Verifier], require: int = 1) -> OpenedNote:
    """Parse and verify a signed note against the `known` keys.

    Every signature whose name and key id match a known key must verify; at least
    `require` distinct known keys must have signed. Signatures by unknown keys are
    ignored and kept (`unverified`); repeats of a line are dropped.

    Raises:
        MalformedNote: the bytes are not a signed note.
        AmbiguousKey: two different known keys share a name and id.
        BadNoteSignature: a known key's signature does not verify.
        UnverifiedNote: fewer than `require` known keys signed.
    """
    note = data if isinstance(data, Note) else parse_note(data)
    keys = _key_map(known)
    text = note.text.encode()
    verified: dict[tuple[str, int], NoteSignature] = {}
    unverified: dict[NoteSignature, None] = {}
    for sig in note.signatures:
        v = keys.get(sig.key)
        if v is None:
            unverified.setdefault(sig)
            continue
        if not v.verify(text, sig):
            raise BadNoteSignature(f"the signature by {v} does not verify")
        verified.setdefault(sig.key, sig)
    if len(verified) < require:
        got = ", ".join(f"{n}+{i:08x}" for n, i in verified) or "none"
        raise UnverifiedNote(
            f"the note is signed by {len(verified)} of the known keys, want {require} (verified: {got})"
        )
    return OpenedNote(note.text, tuple(verified.values()), tuple(unverified))


def verifiers(vkeys: Sequence[str]) -> list[Verifier]:
    """Parse several vkeys (see `Verifier.parse`)."""
    return [Verifier.parse(k) for k in vkeys]
