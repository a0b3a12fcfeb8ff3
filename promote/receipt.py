"""Receipts anyone can verify offline (issue 16): a promotion's VSA, its ledger entry,
the entry's inclusion proof and a C2SP checkpoint signed by the runner key.

    {"schema": "promote-receipt/v1",
     "vsa": {DSSE envelope},                 the VSA (promote.vsa), as stored
     "entry": {ledger entry v2},             its canonical bytes are the entry's
     "inclusion": {promote-inclusion-proof/v1},
     "checkpoint": "<origin>\\n<size>\\n<root>\\n\\n— <origin> <sig>\\n...",
     "key": {"keyid": "<hex SHA-256 of the runner key's DER SPKI>",
             "vkey": "<origin>+<id>+<base64>"}}

`verify_receipt` needs nothing but the receipt and the runner's public key (PEM); it
checks, in this order, and names the first link that does not hold:

1. `vsa signature`: the VSA's DSSE signature by the key;
2. `entry signature`: the entry's signature by the key;
3. `vsa named by entry`: the entry's `vsa` is the BLAKE3 of the VSA envelope's
   canonical bytes, and the VSA is about this entry (resourceUri), PASSED, with
   exactly the entry's subjects and evidence (`promote.vsa.check_vsa`);
4. `checkpoint signature`: the checkpoint is a C2SP signed note of a BLAKE3 log
   (origin `<name>/blake3`, ADR 12), signed by the key under the origin's name (and,
   with `origin`, of that log);
5. `inclusion`: the entry is leaf `seq - 1` of the checkpoint's tree;
6. with witnesses: `cosignatures`, N of the given witness keys cosigned it;
7. with an artifact: `artifact`, the file's BLAKE3 and SHA-256 are one subject's.

The checkpoint is signed by the runner key (one key signs the VSA, the entry and the
tree head); as a note key it is named by the log's origin, so the same PEM key is
both a DSSE key (by its SPKI id) and a note key (by its note key id, ADR 12).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import blake3

from cas.digest import Digest, hash_bytes
from cas.errors import CasError
from promote.attest.dsse import Envelope, b64decode, verify_envelope
from promote.attest.errors import InvalidEnvelope, InvalidKey
from promote.attest.keys import PublicKey, key_id, verify
from promote.attest.trust import TrustRoots
from promote.canonical import canonical, load_json
from promote.errors import InvalidDocument
from promote.ledger.backend import CommitBackend
from promote.ledger.checkpoint import (
    BLAKE3_SUFFIX,
    ForeignLog,
    TlogCheckpoint,
    ledger_origin,
    sign_checkpoint,
)
from promote.ledger.entry import Entry, parse_entry
from promote.ledger.merkle import ProofError
from promote.ledger.note import Signer, Verifier
from promote.ledger.proofs import Checkpoint, InclusionProof, ledger_checkpoint, prove_inclusion

__all__ = [
    "DEFAULT_LOG_NAME",
    "RECEIPT_SCHEMA",
    "BrokenLink",
    "Verified",
    "build_receipt",
    "checkpoint_note",
    "note_signer",
    "note_verifier",
    "read_note_checkpoint",
    "verify_receipt",
]

RECEIPT_SCHEMA = "promote-receipt/v1"
#: The log name when none is given: the origin is `cas-promote.invalid/ledger/blake3`.
#: A log's identity is its key; name yours (`--log-name`) to tell logs apart by origin.
DEFAULT_LOG_NAME = "cas-promote.invalid/ledger"
MAX_RECEIPT = 32 << 20
_KEYS = {"schema", "vsa", "entry", "inclusion", "checkpoint", "key"}


class BrokenLink(ProofError):
    """A receipt link that does not hold (exit 3); `link` names it."""

    def __init__(self, link: str, message: str) -> None:
        super().__init__(f"{link}: {message}")
        self.link = link


def _ed25519(key: Any, what: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    if not isinstance(key, Ed25519PrivateKey | Ed25519PublicKey):
        raise InvalidKey(f"{what}: a C2SP checkpoint is signed with Ed25519; this is another kind")
    return key


def note_signer(key: Any, origin: str) -> Signer:
    """The runner key (an Ed25519 PEM key) as the log's note key, named `origin`."""
    return Signer(origin, 0x01, _ed25519(key, "the log key"))


def note_verifier(key: PublicKey, origin: str) -> Verifier:
    return Verifier.from_public_key(origin, _ed25519(key, "the log key"))


def checkpoint_note(
    backend: CommitBackend, key: Any, log_name: str = DEFAULT_LOG_NAME, size: int | None = None
) -> bytes:
    """The ledger's checkpoint (at `size`, default the head) as a C2SP signed note of
    the origin `<log_name>/blake3`, signed by `key`."""
    origin = ledger_origin(log_name)
    cp = ledger_checkpoint(backend, size)
    return sign_checkpoint(TlogCheckpoint(origin, cp.size, cp.root), note_signer(key, origin))


def read_note_checkpoint(
    data: bytes, key: PublicKey | None, origin: str | None = None
) -> tuple[TlogCheckpoint, Checkpoint]:
    """A C2SP checkpoint of a BLAKE3 log: its body, and the size and root as the proof
    verifiers take them. With `key`, the log's signature by it (named as the origin)
    must hold; with `origin`, it must be that log's.

    Raises:
        MalformedNote, MalformedCheckpoint (2). ForeignLog, BadNoteSignature,
        UnverifiedNote (3): another log, or not signed by the key.
    """
    from promote.ledger.note import open_note, parse_note

    note = parse_note(data)
    cp = TlogCheckpoint.parse(note.text)
    if origin is not None and cp.origin != origin:
        raise ForeignLog(f"the checkpoint is of the log {cp.origin[:100]!r}, not {origin!r}")
    if not cp.origin.endswith(BLAKE3_SUFFIX):
        raise ForeignLog(
            f"the checkpoint's origin {cp.origin[:100]!r} does not end in {BLAKE3_SUFFIX}:"
            " not a tree over BLAKE3, so not this ledger's"
        )
    if key is not None:
        open_note(note, [note_verifier(key, cp.origin)])
    return cp, Checkpoint(cp.size, cp.root)


def build_receipt(
    backend: CommitBackend,
    store: Any,
    seq: int,
    key: Any,
    log_name: str = DEFAULT_LOG_NAME,
) -> dict[str, Any]:
    """The receipt of entry `seq` against the ledger's head, signed by `key` (the
    runner's private key).

    Raises:
        UsageError: no such entry. LinkageError: a v1 entry (no VSA), the VSA missing.
    """
    from promote.errors import LinkageError

    proof, data = prove_inclusion(backend, seq)
    entry = parse_entry(data)
    if entry.vsa is None:
        raise LinkageError(f"ledger entry {seq} is a v1 entry: it names no VSA to give")
    try:
        vsa = load_json(store.read_bytes(entry.vsa.digest, limit=8 << 20), "VSA")
    except CasError as e:
        raise LinkageError(f"the VSA of entry {seq}: {e}") from None
    origin = ledger_origin(log_name)
    cp = TlogCheckpoint(origin, proof.tree_size, ledger_checkpoint(backend, proof.tree_size).root)
    note = sign_checkpoint(cp, note_signer(key, origin))
    pub = key.public_key()
    return {
        "schema": RECEIPT_SCHEMA,
        "vsa": vsa,
        "entry": load_json(data, "ledger entry"),
        "inclusion": proof.to_dict(),
        "checkpoint": note.decode(),
        "key": {"keyid": key_id(pub), "vkey": note_verifier(pub, origin).vkey()},
    }


@attrs.frozen
class Verified:
    """What a receipt proved."""

    seq: int
    entry: Digest
    origin: str
    size: int
    subjects: tuple[str, ...]
    cosigners: tuple[str, ...] = ()
    artifact: str | None = None


def _parse(data: bytes) -> tuple[dict[str, Any], Envelope, Entry, InclusionProof, bytes]:
    if len(data) > MAX_RECEIPT:
        raise InvalidDocument(f"receipt: larger than {MAX_RECEIPT} bytes")
    doc = load_json(data, "receipt")
    if not isinstance(doc, dict) or set(doc) != _KEYS or doc["schema"] != RECEIPT_SCHEMA:
        raise InvalidDocument(f"receipt: not a {RECEIPT_SCHEMA} document")
    try:
        envelope = Envelope.from_dict(doc["vsa"])
    except InvalidEnvelope as e:
        raise InvalidDocument(f"receipt vsa: {e}") from None
    try:
        entry = parse_entry(canonical(doc["entry"]))
    except CasError as e:
        raise InvalidDocument(f"receipt entry: {e}") from None
    if entry.version != 2:
        raise InvalidDocument("receipt entry: a v1 entry is unsigned and names no VSA")
    proof = InclusionProof.from_dict(doc["inclusion"])
    if not isinstance(doc["checkpoint"], str):
        raise InvalidDocument("receipt checkpoint: want the signed note's text")
    key = doc["key"]
    if not isinstance(key, dict) or set(key) != {"keyid", "vkey"}:
        raise InvalidDocument("receipt key: want {keyid, vkey}")
    return doc, envelope, entry, proof, doc["checkpoint"].encode()


def verify_receipt(
    data: bytes,
    key: PublicKey | None,
    *,
    trust: TrustRoots | None = None,
    artifact: Path | None = None,
    origin: str | None = None,
    witnesses: Sequence[Verifier] = (),
    require: int = 0,
) -> Verified:
    """Verify a receipt offline (see the module docstring).

    Raises:
        InvalidDocument and the note and key errors (2): a malformed receipt.
        BrokenLink (3): the first link that does not hold, named.
    """
    from promote.ledger.checkpoint import MalformedCheckpoint
    from promote.ledger.note import MalformedNote, NoteVerificationError
    from promote.ledger.proofs import verify_inclusion_proof
    from promote.vsa import check_vsa

    doc, envelope, entry, proof, note = _parse(data)
    if trust is not None:
        # the verifier's trust roots, as they are now: a key a later trust change
        # removed from the runners no longer vouches for anything
        signed_by = entry.doc["signature"]["keyid"]
        if signed_by not in trust.keys or "runner" not in trust.signer_of(signed_by).roles:
            raise BrokenLink(
                "trust roots",
                f"ledger entry {entry.seq} is signed by the key {signed_by}, which the trust"
                " roots do not hold as a runner's (removed by a later trust change?)",
            )
        key = trust.keys[signed_by]
    if key is None:
        raise InvalidDocument("verify a receipt with a key or trust roots")
    kid = key_id(key)
    # 1. the VSA's DSSE signature
    if kid not in verify_envelope(envelope, {kid: key}).verified:
        raise BrokenLink("vsa signature", f"the VSA is not signed by the key {kid}")
    # 2. the entry's signature
    sig = entry.doc["signature"]
    if sig["keyid"] != kid or not verify(
        key, b64decode(sig["sig"], "entry signature"), entry.signed_bytes()
    ):
        raise BrokenLink(
            "entry signature", f"ledger entry {entry.seq} is not signed by the key {kid}"
        )
    # 3. the VSA is the one the entry names, and about it
    vsa_digest = hash_bytes(envelope.encode()).digest
    assert entry.vsa is not None
    if vsa_digest != entry.vsa.digest:
        raise BrokenLink(
            "vsa named by entry",
            f"ledger entry {entry.seq} names the VSA {entry.vsa.digest}, not this one ({vsa_digest})",
        )
    try:
        st = check_vsa(envelope, entry.doc, None)
    except CasError as e:
        raise BrokenLink("vsa named by entry", str(e)) from None
    # 4. the checkpoint, signed by the key as the log
    try:
        cp, tree = read_note_checkpoint(note, key, origin)
    except (MalformedNote, MalformedCheckpoint):
        raise
    except (ProofError, NoteVerificationError) as e:
        raise BrokenLink("checkpoint signature", str(e)) from None
    # 5. the entry is in the checkpoint's tree
    try:
        verify_inclusion_proof(proof, entry.data, tree)
    except ProofError as e:
        raise BrokenLink(
            "inclusion",
            f"ledger entry {entry.seq} is not in the tree of {cp.origin} at size {cp.size}: {e}",
        ) from None
    # 6. cosignatures
    cosigners: tuple[str, ...] = ()
    if require or witnesses:
        from promote.ledger.witness import LogConfig, verify_cosigned

        try:
            cosigned = verify_cosigned(
                note, LogConfig(cp.origin, (note_verifier(key, cp.origin),)), witnesses, require
            )
        except (ProofError, NoteVerificationError) as e:
            raise BrokenLink("cosignatures", str(e)) from None
        cosigners = tuple(str(w) for w in cosigned.cosigners)
    # 7. the artifact
    shown = None
    if artifact is not None:
        b3, sha = blake3.blake3(), hashlib.sha256()
        try:
            with artifact.open("rb") as f:
                while chunk := f.read(1 << 20):
                    b3.update(chunk)
                    sha.update(chunk)
        except OSError as e:
            raise InvalidDocument(f"artifact {artifact}: {e.strerror}") from None
        want = {"blake3": b3.hexdigest(), "sha256": sha.hexdigest()}
        match = [s.name for s in st.subjects if s.digests == want]
        if not match:
            raise BrokenLink(
                "artifact",
                f"{artifact} (blake3:{want['blake3']}) is not a subject of the VSA",
            )
        shown = match[0]
    del doc
    return Verified(
        entry.seq,
        entry.hash,
        cp.origin,
        cp.size,
        tuple(s.name for s in st.subjects),
        cosigners,
        shown,
    )
