"""C2SP checkpoints (c2sp.org/tlog-checkpoint): a log's tree head as a signed note.

The note text is three lines and optional extension lines, each ending in a newline:

    <origin>                  the log's identity, non-empty
    <tree size>               ASCII decimal, no leading zeros ("0" for the empty tree)
    <root hash>               standard base64 of the RFC 6962 Merkle tree root
    [<extension line>...]     non-empty, opaque

**The hash.** tlog-checkpoint says the root is "the root of the RFC 6962 Merkle hash
tree", and RFC 6962's tree is SHA-256. The ledger's tree is RFC 6962's structure (the
0x00 / 0x01 prefixes, the split at the largest power of two) over BLAKE3. A tree over
another hash is another log, so the hash is named where a log's identity is: the ledger's
origin ends in `/blake3` (`ledger_origin`), and the log signs under that name. Any origin
that does not end in `/blake3` is taken to be a standard SHA-256 tree (`hasher_for`).
An extension line was not used: tlog-checkpoint calls them NOT RECOMMENDED, and the
ML-DSA-44 cosignature does not sign them. **A standard tlog verifier that expects
SHA-256 will parse these checkpoints and verify their signatures, but it will not
verify an inclusion or consistency proof against the root.** See docs/adr (C2SP
checkpoints).

Parsing is strict: a body that `TlogCheckpoint.body()` would not write byte for byte
(leading zeros, `+5`, non-canonical base64, an empty extension line, a missing final
newline) is refused with `MalformedCheckpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from promote.ledger.merkle import BLAKE3_TREE, SHA256_TREE, ProofError, TreeHasher
from promote.ledger.note import (
    ED25519,
    MAX_LINE_BYTES,
    MAX_NAME_BYTES,
    InvalidNoteKey,
    MalformedNote,
    Note,
    OpenedNote,
    Signer,
    Verifier,
    b64decode_canonical,
    b64encode,
    check_key_name,
    open_note,
    parse_note,
    sign_note,
)

__all__ = [
    "BLAKE3_SUFFIX",
    "MAX_EXTENSIONS",
    "ForeignLog",
    "MalformedCheckpoint",
    "SignedCheckpoint",
    "TlogCheckpoint",
    "hasher_for",
    "ledger_origin",
    "open_checkpoint",
    "sign_checkpoint",
]

#: The end of the origin of a log whose tree is RFC 6962 over BLAKE3.
BLAKE3_SUFFIX = "/blake3"
MAX_EXTENSIONS = 16
MAX_SIZE = (1 << 64) - 1
_SIZE = re.compile(r"0|[1-9][0-9]*")


class MalformedCheckpoint(MalformedNote):
    """A note text that is not a well-formed tlog-checkpoint body (exit 2)."""


class ForeignLog(ProofError):
    """A checkpoint of another log than the one expected (exit 3)."""


def ledger_origin(log_name: str) -> str:
    """The origin (and log key name) of the ledger called `log_name`: `<name>/blake3`.

    Raises:
        InvalidNoteKey: `log_name` is not a valid key name, or the origin is too long.
    """
    check_key_name(log_name, "log name")
    return check_key_name(log_name + BLAKE3_SUFFIX, "log origin")


def hasher_for(origin: str) -> TreeHasher:
    """BLAKE3 for an origin ending in `/blake3`, else RFC 6962's SHA-256."""
    return BLAKE3_TREE if origin.endswith(BLAKE3_SUFFIX) else SHA256_TREE


def _check_line(line: str, what: str) -> str:
    if not line:
        raise MalformedCheckpoint(f"checkpoint: empty {what}")
    if "\n" in line or any(ord(c) < 0x20 for c in line):
        raise MalformedCheckpoint(f"checkpoint: the {what} contains a control character")
    if len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        raise MalformedCheckpoint(f"checkpoint: the {what} is longer than {MAX_LINE_BYTES} bytes")
    return line


@attrs.frozen
class TlogCheckpoint:
    """A tree head: origin, size, root hash, extension lines."""

    origin: str
    size: int
    root: bytes = attrs.field(repr=lambda r: r.hex())
    extensions: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        _check_line(self.origin, "origin")
        if len(self.origin.encode()) > MAX_NAME_BYTES:
            raise MalformedCheckpoint(
                f"checkpoint: the origin is longer than {MAX_NAME_BYTES} bytes"
            )
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_SIZE:
            raise MalformedCheckpoint(f"checkpoint: tree size {self.size} is not in 0..2^64-1")
        if not self.root:
            raise MalformedCheckpoint("checkpoint: empty root hash")
        if len(self.extensions) > MAX_EXTENSIONS:
            raise MalformedCheckpoint(f"checkpoint: more than {MAX_EXTENSIONS} extension lines")
        for e in self.extensions:
            _check_line(e, "extension line")

    def body(self) -> str:
        """The note text: origin, size, base64 root and extension lines, one per line."""
        lines = [self.origin, str(self.size), b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, body: str | bytes, hash_size: int | None = 32) -> TlogCheckpoint:
        """A checkpoint body, exactly as `body()` writes it.

        `hash_size`: the root's length in bytes (None: any length).

        Raises:
            MalformedCheckpoint: with the reason.
        """
        if isinstance(body, bytes):
            try:
                body = body.decode("utf-8")
            except UnicodeDecodeError:
                raise MalformedCheckpoint("checkpoint: not valid UTF-8") from None
        if not body.endswith("\n"):
            raise MalformedCheckpoint("checkpoint: the last line must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpoint("checkpoint: want origin, tree size and root hash lines")
        origin, size, root, *ext = lines
        if not _SIZE.fullmatch(size) or int(size) > MAX_SIZE:
            raise MalformedCheckpoint(
                f"checkpoint: tree size {size[:30]!r} is not a decimal in 0..2^64-1 without leading zeros"
            )
        raw = b64decode_canonical(root)
        if not raw:
            raise MalformedCheckpoint("checkpoint: the root hash is not canonical base64")
        if hash_size is not None and len(raw) != hash_size:
            raise MalformedCheckpoint(
                f"checkpoint: the root hash is {len(raw)} bytes, want {hash_size}"
            )
        return cls(origin, int(size), raw, tuple(ext))


@attrs.frozen
class SignedCheckpoint:
    """A checkpoint whose note verified against the log's keys."""

    checkpoint: TlogCheckpoint
    note: OpenedNote


def sign_checkpoint(cp: TlogCheckpoint, signer: Signer) -> bytes:
    """The signed note of `cp`, signed by the log's Ed25519 key, whose name must be the
    origin (tlog-checkpoint: the log's key name SHOULD match the origin line).

    Raises:
        InvalidNoteKey: the signer is not a plain Ed25519 note key named as the origin.
    """
    if signer.sig_type != ED25519:
        raise InvalidNoteKey(f"log key {signer.name}: a log signs with an Ed25519 (0x01) key")
    if signer.name != cp.origin:
        raise InvalidNoteKey(
            f"log key {signer.name}: the log key's name must be the origin {cp.origin}"
        )
    return sign_note(Note(cp.body()), signer).encode()


def open_checkpoint(
    data: bytes,
    log_keys: Iterable[Verifier],
    origin: str | None = None,
    hash_size: int | None = 32,
) -> SignedCheckpoint:
    """Parse a signed checkpoint and verify the log's signature (one of `log_keys`).

    With `origin`, the checkpoint must be that log's. Other signatures (cosignatures)
    are kept in `note.unverified`, unchecked.

    Raises:
        MalformedNote, MalformedCheckpoint: malformed bytes.
        ForeignLog: the origin is not `origin`.
        BadNoteSignature, UnverifiedNote: the log's signature is bad or missing.
    """
    note = parse_note(data)
    cp = TlogCheckpoint.parse(note.text, hash_size)
    if origin is not None and cp.origin != origin:
        raise ForeignLog(f"the checkpoint is of the log {cp.origin[:100]!r}, not {origin!r}")
    return SignedCheckpoint(cp, open_note(note, log_keys))
