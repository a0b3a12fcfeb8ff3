"""Ledger proofs: checkpoints, inclusion and consistency proofs, and their verifiers.

The ledger's Merkle tree (see control/promote/promote_protocol.md, "Ledger proofs") is
RFC 6962's tree with BLAKE3, whose leaf n-1 is the 32-byte BLAKE3 digest of ledger
entry n, that is of the entry's canonical bytes:

    leaf(n) = BLAKE3(0x00 || BLAKE3(entry n's bytes))

Three documents, each JSON with a `schema`:

- a checkpoint: `size` (entries), `root` (hex), optional Ed25519 `signatures` over
  the checkpoint's *note*: `promote-checkpoint/v1\\n<size>\\n<root hex>\\n`;
- an inclusion proof: `leaf_index` (= seq - 1), `tree_size`, `entry` (the entry's
  digest) and `path` (hex hashes, leaf to root);
- a consistency proof: `old_size`, `new_size`, `path`.

Building reads the ledger only through `CommitBackend` (`head()` and `entries()`), so
it works on any backend. Verifying needs no ledger at all: `verify_inclusion_proof` and
`verify_consistency_proof` take the documents (and the entry's bytes) and nothing else.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import attrs
import blake3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cas.digest import Digest
from cas.errors import IntegrityError, UsageError
from promote.canonical import load_json
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import ENTRY_SCHEMAS
from promote.ledger.merkle import (
    BLAKE3_TREE,
    ProofError,
    consistency_proof,
    inclusion_proof,
    root,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "CHECKPOINT_SCHEMA",
    "CONSISTENCY_SCHEMA",
    "INCLUSION_SCHEMA",
    "Checkpoint",
    "ConsistencyProof",
    "InclusionProof",
    "Signature",
    "entry_leaf",
    "key_id",
    "ledger_checkpoint",
    "load_checkpoint",
    "load_private_key",
    "load_proof",
    "load_public_key",
    "prove_consistency",
    "prove_inclusion",
    "verify_consistency_proof",
    "verify_inclusion_proof",
]

CHECKPOINT_SCHEMA = "promote-checkpoint/v1"
INCLUSION_SCHEMA = "promote-inclusion-proof/v1"
CONSISTENCY_SCHEMA = "promote-consistency-proof/v1"
TREE = BLAKE3_TREE
#: Inclusion proofs are at most log2(size) long; this bounds hostile input.
MAX_PATH = 64


# -- small typed fields -------------------------------------------------------------


def _hash_from_hex(value: object, what: str) -> bytes:
    if (
        not isinstance(value, str)
        or len(value) != 2 * TREE.size
        or value != value.lower()
        or not all(c in "0123456789abcdef" for c in value)
    ):
        raise InvalidDocument(f"{what}: want {2 * TREE.size} lowercase hex digits")
    return bytes.fromhex(value)


def _size(value: object, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidDocument(f"{what}: want an integer >= {minimum}")
    return value


def _path(value: object, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > MAX_PATH:
        raise InvalidDocument(f"{what}: want a list of at most {MAX_PATH} hashes")
    return tuple(_hash_from_hex(v, f"{what}[{i}]") for i, v in enumerate(value))


def _keys(doc: object, schema: str, keys: set[str], what: str) -> Mapping[str, Any]:
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        raise InvalidDocument(f"{what}: not a {schema} document")
    if set(doc) != keys | {"schema"}:
        raise InvalidDocument(f"{what}: want exactly the keys {sorted(keys | {'schema'})}")
    return doc


# -- keys and signatures ------------------------------------------------------------


def key_id(key: Ed25519PublicKey) -> Digest:
    """The BLAKE3 digest of the raw 32-byte public key: names the key in a signature."""
    return Digest("blake3", blake3.blake3(key.public_bytes_raw()).hexdigest())


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (PKCS#8, as `openssl genpkey` writes).

    Raises:
        UsageError: unreadable, or not an unencrypted Ed25519 private key.
    """
    from cryptography.hazmat.primitives import serialization  # only here: 13 ms to import

    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise UsageError(f"signing key {path}: not a PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"signing key {path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (SubjectPublicKeyInfo, `openssl pkey -pubout`).

    Raises:
        UsageError: unreadable, or not an Ed25519 public key.
    """
    from cryptography.hazmat.primitives import serialization

    data = _read_key_file(path, "verification key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise UsageError(f"verification key {path}: not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"verification key {path}: not an Ed25519 key")
    return key


@attrs.frozen
class Signature:
    """An Ed25519 signature over a checkpoint's note, and the id of the key that made it."""

    key_id: Digest
    signature: bytes = attrs.field(repr=False)

    @signature.validator
    def _sixty_four(self, attribute: attrs.Attribute[bytes], value: bytes) -> None:
        if len(value) != 64:
            raise InvalidDocument("checkpoint signature: want 64 bytes (Ed25519)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": "ed25519",
            "key_id": str(self.key_id),
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, doc: object) -> Signature:
        if not isinstance(doc, dict) or set(doc) != {"algorithm", "key_id", "signature"}:
            raise InvalidDocument("checkpoint signature: want {algorithm, key_id, signature}")
        if doc["algorithm"] != "ed25519":
            raise InvalidDocument(f"checkpoint signature: unknown algorithm {doc['algorithm']!r}")
        try:
            sig = base64.b64decode(doc["signature"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidDocument("checkpoint signature: not base64") from None
        try:
            kid = Digest.parse(doc["key_id"])
        except UsageError as e:
            raise InvalidDocument(f"checkpoint signature key_id: {e}") from None
        return cls(kid, sig)


# -- the documents ------------------------------------------------------------------


@attrs.frozen
class Checkpoint:
    """The size and root of the ledger's tree, optionally signed."""

    size: int
    root: bytes
    signatures: tuple[Signature, ...] = ()

    def note(self) -> bytes:
        """The exact bytes a signature covers."""
        return f"{CHECKPOINT_SCHEMA}\n{self.size}\n{self.root.hex()}\n".encode()

    def sign(self, key: Ed25519PrivateKey) -> Checkpoint:
        """This checkpoint with one more signature (replacing one by the same key)."""
        kid = key_id(key.public_key())
        others = tuple(s for s in self.signatures if s.key_id != kid)
        return attrs.evolve(self, signatures=(*others, Signature(kid, key.sign(self.note()))))

    def check_signature(self, key: Ed25519PublicKey, what: str = "checkpoint") -> None:
        """Require a valid signature by `key`.

        Raises:
            ProofError: no signature by this key, or one that does not verify.
        """
        kid = key_id(key)
        mine = [s for s in self.signatures if s.key_id == kid]
        if not mine:
            raise ProofError(f"{what} is not signed by the key {kid}")
        for s in mine:
            try:
                key.verify(s.signature, self.note())
            except InvalidSignature:
                raise ProofError(f"{what}: the signature by {kid} does not verify") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CHECKPOINT_SCHEMA,
            "size": self.size,
            "root": self.root.hex(),
            "signatures": [s.to_dict() for s in self.signatures],
        }

    @classmethod
    def from_dict(cls, doc: object) -> Checkpoint:
        d = _keys(doc, CHECKPOINT_SCHEMA, {"size", "root", "signatures"}, "checkpoint")
        sigs = d["signatures"]
        if not isinstance(sigs, list):
            raise InvalidDocument("checkpoint: 'signatures' must be a list")
        return cls(
            _size(d["size"], "checkpoint size"),
            _hash_from_hex(d["root"], "checkpoint root"),
            tuple(Signature.from_dict(s) for s in sigs),
        )


@attrs.frozen
class InclusionProof:
    """That the entry with digest `entry` is leaf `leaf_index` of a tree of `tree_size`."""

    leaf_index: int
    tree_size: int
    entry: Digest
    path: tuple[bytes, ...]

    @property
    def seq(self) -> int:
        return self.leaf_index + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": INCLUSION_SCHEMA,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "entry": str(self.entry),
            "path": [p.hex() for p in self.path],
        }

    @classmethod
    def from_dict(cls, doc: object) -> InclusionProof:
        d = _keys(
            doc, INCLUSION_SCHEMA, {"leaf_index", "tree_size", "entry", "path"}, "inclusion proof"
        )
        try:
            entry = Digest.parse(d["entry"])
        except UsageError as e:
            raise InvalidDocument(f"inclusion proof entry: {e}") from None
        return cls(
            _size(d["leaf_index"], "inclusion proof leaf_index"),
            _size(d["tree_size"], "inclusion proof tree_size", 1),
            entry,
            _path(d["path"], "inclusion proof path"),
        )


@attrs.frozen
class ConsistencyProof:
    """That the tree of `old_size` leaves is a prefix of the tree of `new_size` leaves."""

    old_size: int
    new_size: int
    path: tuple[bytes, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CONSISTENCY_SCHEMA,
            "old_size": self.old_size,
            "new_size": self.new_size,
            "path": [p.hex() for p in self.path],
        }

    @classmethod
    def from_dict(cls, doc: object) -> ConsistencyProof:
        d = _keys(doc, CONSISTENCY_SCHEMA, {"old_size", "new_size", "path"}, "consistency proof")
        return cls(
            _size(d["old_size"], "consistency proof old_size"),
            _size(d["new_size"], "consistency proof new_size"),
            _path(d["path"], "consistency proof path"),
        )


def load_checkpoint(data: bytes, what: str = "checkpoint") -> Checkpoint:
    """Parse checkpoint bytes.

    Raises:
        InvalidDocument: anything that is not a well-formed checkpoint.
    """
    return Checkpoint.from_dict(load_json(data, what))


def load_proof(data: bytes) -> InclusionProof | ConsistencyProof:
    """Parse a proof of either kind, told apart by its `schema`.

    Raises:
        InvalidDocument: anything that is not a well-formed proof.
    """
    doc = load_json(data, "proof")
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema == INCLUSION_SCHEMA:
        return InclusionProof.from_dict(doc)
    if schema == CONSISTENCY_SCHEMA:
        return ConsistencyProof.from_dict(doc)
    raise InvalidDocument(f"proof: want schema {INCLUSION_SCHEMA} or {CONSISTENCY_SCHEMA}")


# -- building, from a ledger --------------------------------------------------------


def entry_leaf(entry_bytes: bytes) -> bytes:
    """The leaf hash of a ledger entry: BLAKE3(0x00 || BLAKE3(entry bytes))."""
    return TREE.leaf(blake3.blake3(entry_bytes).digest())


def _leaves(
    backend: CommitBackend, size: int | None, keep: int | None = None
) -> tuple[list[bytes], bytes | None]:
    """The leaf hashes of the first `size` entries (all, when None), and entry `keep`.

    A cheap link check runs on the way: in an entry's canonical bytes the keys `prev`,
    `schema` and `seq` are adjacent (RFC 8785 sorts keys), so each entry must hold
    `"prev":<previous entry's digest>,"schema":"promote-ledger-entry/v<1|2>","seq":<n>,`
    verbatim. This catches an edited, dropped or reordered entry without parsing 100,000
    JSON documents; `promote ledger verify` remains the full check.

    Raises:
        UsageError: `size` is beyond the head.
        IntegrityError: an entry is missing or breaks the chain.
    """
    head = backend.head()
    if size is None:
        size = head.seq
    if not 0 <= size <= head.seq:
        raise UsageError(f"size {size}: the ledger has {head.seq} entries")
    leaves: list[bytes] = []
    kept = None
    prev = b"null"
    leaf = TREE.leaf
    schemas = [s.encode() for s in ENTRY_SCHEMAS]
    for seq, data in enumerate(islice(backend.entries(), size), start=1):
        links = [b'"prev":%s,"schema":"%s","seq":%d,' % (prev, s, seq) for s in schemas]
        if not any(link in data for link in links):
            raise IntegrityError(
                f"ledger entry {seq} does not link to entry {seq - 1} (run 'promote ledger verify')"
            )
        digest = blake3.blake3(data).digest()
        leaves.append(leaf(digest))
        prev = b'"blake3:%s"' % digest.hex().encode()
        if seq == keep:
            kept = data
    if len(leaves) != size:
        raise IntegrityError(f"the ledger yielded {len(leaves)} entries, its head says {size}")
    if size == head.seq and head.entry is not None and prev != f'"{head.entry}"'.encode():
        raise IntegrityError(f"the last entry does not hash to the head {head.entry}")
    return leaves, kept


def ledger_checkpoint(backend: CommitBackend, size: int | None = None) -> Checkpoint:
    """The (unsigned) checkpoint of the ledger at `size` entries (default: its head).

    Raises:
        UsageError, IntegrityError: see `_leaves`.
    """
    leaves, _ = _leaves(backend, size)
    return Checkpoint(len(leaves), root(TREE, leaves))


def prove_inclusion(
    backend: CommitBackend, seq: int, size: int | None = None
) -> tuple[InclusionProof, bytes]:
    """The inclusion proof of entry `seq` in the tree of `size` entries, and the entry.

    Raises:
        UsageError: `seq` is not within the first `size` entries.
        IntegrityError: see `_leaves`.
    """
    if seq < 1:
        raise UsageError(f"entry {seq}: sequence numbers start at 1")
    leaves, data = _leaves(backend, size, keep=seq)
    if data is None:
        raise UsageError(f"entry {seq} is not in a ledger of {len(leaves)} entries")
    path = inclusion_proof(TREE, seq - 1, leaves)
    entry = Digest("blake3", blake3.blake3(data).hexdigest())
    return InclusionProof(seq - 1, len(leaves), entry, tuple(path)), data


def prove_consistency(
    backend: CommitBackend, old_size: int, new_size: int | None = None
) -> ConsistencyProof:
    """The consistency proof from the tree of `old_size` entries to `new_size` (head).

    Raises:
        UsageError: `old_size` is not within 0..new_size.
        IntegrityError: see `_leaves`.
    """
    leaves, _ = _leaves(backend, new_size)
    if not 0 <= old_size <= len(leaves):
        raise UsageError(f"old size {old_size} is not within 0..{len(leaves)}")
    return ConsistencyProof(old_size, len(leaves), tuple(consistency_proof(TREE, old_size, leaves)))


# -- verifying, offline -------------------------------------------------------------


def _entry_seq(entry_bytes: bytes) -> object:
    try:
        doc = load_json(entry_bytes, "ledger entry")
    except InvalidDocument:
        return None
    return doc.get("seq") if isinstance(doc, dict) else None


def verify_inclusion_proof(
    proof: InclusionProof,
    entry_bytes: bytes,
    checkpoint: Checkpoint,
    key: Ed25519PublicKey | None = None,
) -> None:
    """Check that `entry_bytes` is entry `proof.seq` of the ledger `checkpoint` describes.

    Needs nothing else: no ledger, no store, no network.

    Raises:
        ProofError: with the reason, for a tampered entry, a wrong index, a proof of
            another tree, or (given `key`) a checkpoint not signed by that key.
    """
    if key is not None:
        checkpoint.check_signature(key)
    digest = blake3.blake3(entry_bytes).hexdigest()
    if digest != proof.entry.hex:
        raise ProofError(f"the entry hashes to blake3:{digest}, but the proof is for {proof.entry}")
    seq = _entry_seq(entry_bytes)
    if seq != proof.seq:
        raise ProofError(f"the entry says seq {seq}, but the proof is for leaf {proof.seq}")
    if proof.tree_size != checkpoint.size:
        raise ProofError(
            f"the proof is for a tree of {proof.tree_size} entries,"
            f" the checkpoint has {checkpoint.size}"
        )
    verify_inclusion(
        TREE,
        proof.leaf_index,
        proof.tree_size,
        entry_leaf(entry_bytes),
        proof.path,
        checkpoint.root,
    )


def verify_consistency_proof(
    proof: ConsistencyProof,
    old: Checkpoint,
    new: Checkpoint,
    key: Ed25519PublicKey | None = None,
) -> None:
    """Check that the ledger at checkpoint `old` is a prefix of the ledger at `new`.

    Raises:
        ProofError: with the reason, for a forked or rewritten log, sizes that do not
            match the checkpoints, or (given `key`) a checkpoint not signed by that key.
    """
    if key is not None:
        old.check_signature(key, "the old checkpoint")
        new.check_signature(key, "the new checkpoint")
    if (proof.old_size, proof.new_size) != (old.size, new.size):
        raise ProofError(
            f"the proof is from size {proof.old_size} to {proof.new_size},"
            f" the checkpoints are of sizes {old.size} and {new.size}"
        )
    verify_consistency(TREE, old.size, new.size, proof.path, old.root, new.root)
