"""Witnesses: cosign a log's checkpoint only if it extends what was cosigned before.

A witness holds an Ed25519 key and, per log it follows, the last checkpoint it
cosigned. Given a new signed checkpoint and a consistency proof from that one, it:

1. parses the note and the checkpoint body, and finds the log by its origin
   (`UnknownLog` if it follows no such log);
2. verifies the log's own signature (`BadNoteSignature`, `UnverifiedNote`);
3. under an exclusive lock on its state directory, compares with the last checkpoint
   it cosigned for that origin: a smaller tree is refused (`RollbackRefused`), the same
   size with another root or a proof that does not hold is a fork (`ForkDetected`);
   the first checkpoint of a log is taken on trust;
4. signs a tlog-cosignature v1 (type 0x04: timestamp, then Ed25519 over
   `cosignature/v1\\ntime <t>\\n<checkpoint body>`), records the checkpoint as its new
   state (atomically, `cas.fsutil.atomic_write`, only ever forward), and only then
   returns the cosignature.

State: one directory per witness. `witness.vkey` names the witness key the directory
belongs to (another key is refused); `<first 32 hex of SHA-256(origin)>.checkpoint`
holds, per log, the signed checkpoint last cosigned, as the log sent it.

`verify_cosigned` is the client side: the log's signature and at least N cosignatures
from a given set of witness keys.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

from cas.errors import ConflictError, IntegrityError
from cas.fsutil import atomic_write, makedirs_durable
from promote.ledger.checkpoint import (
    ForeignLog,
    MalformedCheckpoint,
    TlogCheckpoint,
    hasher_for,
)
from promote.ledger.merkle import ProofError, TreeHasher, verify_consistency
from promote.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    InvalidNoteKey,
    MalformedNote,
    Note,
    NoteSignature,
    NoteVerificationError,
    OpenedNote,
    Signer,
    UnverifiedNote,
    Verifier,
    cosignature_timestamp,
    open_note,
    parse_note,
)

__all__ = [
    "MAX_FUTURE_SECONDS",
    "MAX_PROOF",
    "CosignedCheckpoint",
    "FutureCosignature",
    "ForkDetected",
    "LogConfig",
    "MissingCosignatures",
    "OldSizeMismatch",
    "RollbackRefused",
    "UnknownLog",
    "Witness",
    "WitnessRefused",
    "WitnessStateError",
    "add_cosignatures",
    "verify_cosigned",
]

#: A cosignature dated further than this in the future is refused.
MAX_FUTURE_SECONDS = 600
#: A consistency proof is at most about 2 log2(size) hashes.
MAX_PROOF = 128
_KEY_FILE = "witness.vkey"
_LOCK_FILE = ".lock"


class WitnessRefused(ProofError):
    """The witness will not cosign this checkpoint (exit 3)."""


class UnknownLog(WitnessRefused):
    """A checkpoint of a log the witness does not follow."""


class RollbackRefused(WitnessRefused):
    """A tree smaller than the one the witness last cosigned."""


class ForkDetected(WitnessRefused):
    """A tree that does not extend the one the witness last cosigned."""


class OldSizeMismatch(ConflictError):
    """The caller's idea of the last cosigned size is not the witness's (exit 5)."""


class WitnessStateError(IntegrityError):
    """A witness state directory that is damaged or belongs to another key (exit 3)."""


class MissingCosignatures(UnverifiedNote):
    """Fewer cosignatures from the trusted witnesses than required."""


class FutureCosignature(NoteVerificationError):
    """A cosignature dated in the future."""


@attrs.frozen
class LogConfig:
    """A log as its witnesses and clients know it: origin, keys and tree hash."""

    origin: str
    keys: tuple[Verifier, ...]
    hasher: TreeHasher = attrs.field()

    @hasher.default
    def _hasher(self) -> TreeHasher:
        return hasher_for(self.origin)

    def __attrs_post_init__(self) -> None:
        if not self.keys:
            raise InvalidNoteKey(f"log {self.origin}: no keys")
        for k in self.keys:
            if k.sig_type != ED25519:
                raise InvalidNoteKey(f"log key {k}: want an Ed25519 (0x01) note key")

    @classmethod
    def from_vkey(cls, vkey: str) -> LogConfig:
        """A log whose origin is its key's name (as `sign_checkpoint` requires)."""
        v = Verifier.parse(vkey)
        return cls(v.name, (v,))


def add_cosignatures(data: bytes, *sigs: NoteSignature) -> bytes:
    """The signed note `data` with `sigs` appended (replacing any by the same key)."""
    note = parse_note(data)
    mine = {s.key for s in sigs}
    return Note(note.text, (*(s for s in note.signatures if s.key not in mine), *sigs)).encode()


def _origin_file(origin: str) -> str:
    return hashlib.sha256(origin.encode()).hexdigest()[:32] + ".checkpoint"


def _as_cosigner(signer: Signer) -> Signer:
    return signer.cosigner()


def _by_origin(logs: Iterable[LogConfig]) -> dict[str, LogConfig]:
    by: dict[str, LogConfig] = {}
    for c in logs:
        if by.setdefault(c.origin, c) != c:
            raise InvalidNoteKey(f"two configurations for the log {c.origin}")
    return by


@attrs.define
class Witness:
    """A cosigner (its Ed25519 key, used as type 0x04) with its state directory and
    the logs it follows."""

    signer: Signer = attrs.field(converter=_as_cosigner)
    state_dir: Path
    logs: dict[str, LogConfig] = attrs.field(converter=_by_origin)
    clock: Callable[[], float] = time.time

    def verifier(self) -> Verifier:
        """The witness's public key, type 0x04: what clients pin."""
        return self.signer.verifier()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        makedirs_durable(self.state_dir)
        fd = os.open(self.state_dir / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._check_owner()
            yield
        finally:
            os.close(fd)

    def _check_owner(self) -> None:
        path = self.state_dir / _KEY_FILE
        mine = self.verifier().vkey() + "\n"
        try:
            theirs = path.read_text()
        except FileNotFoundError:
            atomic_write(path, mine.encode())
            return
        except (OSError, UnicodeDecodeError) as e:
            raise WitnessStateError(f"witness state {path}: unreadable: {e}") from None
        if theirs != mine:
            raise WitnessStateError(
                f"witness state {self.state_dir} belongs to {theirs.strip()[:120]}, not {self.verifier()}"
            )

    def last(self, origin: str) -> TlogCheckpoint | None:
        """The checkpoint of `origin` this witness last cosigned, if any.

        Raises:
            WitnessStateError: the state file is unreadable or damaged.
        """
        path = self.state_dir / _origin_file(origin)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise WitnessStateError(f"witness state {path}: {e.strerror}") from None
        try:
            cp = TlogCheckpoint.parse(parse_note(data).text, None)
        except MalformedNote as e:
            raise WitnessStateError(f"witness state {path}: {e}") from None
        if cp.origin != origin:
            raise WitnessStateError(f"witness state {path}: holds the log {cp.origin!r}")
        return cp

    def cosign(
        self, data: bytes, proof: Sequence[bytes] = (), old_size: int | None = None
    ) -> NoteSignature:
        """Cosign the signed checkpoint `data`, given a consistency proof from the last
        checkpoint cosigned for its log (`old_size`, when given, must be its size).

        Returns the cosignature; `.line()` is the signature line to append.

        Raises:
            MalformedNote, MalformedCheckpoint: malformed bytes.
            UnknownLog: a log this witness does not follow.
            BadNoteSignature, UnverifiedNote: the log did not sign it.
            OldSizeMismatch: `old_size` is not the size last cosigned.
            RollbackRefused, ForkDetected: it does not extend what was cosigned.
            WitnessStateError: a damaged state directory.
        """
        note = parse_note(data)
        cp = TlogCheckpoint.parse(note.text, None)
        log = self.logs.get(cp.origin)
        if log is None:
            raise UnknownLog(f"this witness does not follow the log {cp.origin[:100]!r}")
        if len(cp.root) != log.hasher.size:
            raise MalformedCheckpoint(
                f"checkpoint: the root is {len(cp.root)} bytes, the log's hash gives {log.hasher.size}"
            )
        open_note(note, log.keys)
        if len(proof) > MAX_PROOF:
            raise ForkDetected(f"a consistency proof of {len(proof)} hashes (at most {MAX_PROOF})")
        with self._locked():
            last = self.last(cp.origin)
            last_size = last.size if last is not None else 0
            if old_size is not None and old_size != last_size:
                raise OldSizeMismatch(
                    f"the witness last cosigned {cp.origin} at size {last_size}, not {old_size}"
                )
            if last is not None:
                _check_extends(log, last, cp, proof)
            sig = self.signer.sign(note.text.encode(), int(self.clock()))
            if last is None or cp.size > last.size:
                atomic_write(self.state_dir / _origin_file(cp.origin), data, 0o600)
        return sig


def _check_extends(
    log: LogConfig, last: TlogCheckpoint, cp: TlogCheckpoint, proof: Sequence[bytes]
) -> None:
    if cp.size < last.size:
        raise RollbackRefused(
            f"{cp.origin}: tree size {cp.size} is smaller than {last.size}, last cosigned"
        )
    if cp.size == last.size:
        if cp.root != last.root:
            raise ForkDetected(f"{cp.origin}: size {cp.size} with another root than last cosigned")
        if proof:
            raise ForkDetected(f"{cp.origin}: same size, the consistency proof must be empty")
        return
    try:
        verify_consistency(log.hasher, last.size, cp.size, proof, last.root, cp.root)
    except ProofError as e:
        raise ForkDetected(
            f"{cp.origin}: size {cp.size} does not extend size {last.size}, last cosigned: {e}"
        ) from None


@attrs.frozen
class CosignedCheckpoint:
    """A checkpoint with its log signature and the cosignatures that verified."""

    checkpoint: TlogCheckpoint
    note: OpenedNote
    cosigners: tuple[Verifier, ...]
    timestamps: tuple[int, ...]


def verify_cosigned(
    data: bytes,
    log: LogConfig,
    witnesses: Iterable[Verifier],
    require: int,
    now: float | None = None,
) -> CosignedCheckpoint:
    """Check a checkpoint of `log`: its log signature, and cosignatures by at least
    `require` distinct keys of `witnesses` (type 0x04 vkeys).

    Signatures by other keys are ignored; a signature by a known key that does not
    verify refuses the whole note; a cosignature dated more than `MAX_FUTURE_SECONDS`
    after `now` (default: the clock) is refused.

    Raises:
        InvalidNoteKey: a witness key that is not a cosignature key, or `require` more
            than the witnesses given.
        MalformedNote, MalformedCheckpoint: malformed bytes.
        ForeignLog: a checkpoint of another log.
        BadNoteSignature: a known key's signature does not verify.
        UnverifiedNote: no signature by the log.
        MissingCosignatures: fewer than `require` cosignatures.
        FutureCosignature: a cosignature from the future.
    """
    wits = {w.key: w for w in witnesses}
    for w in wits.values():
        if w.sig_type != COSIGNATURE_V1:
            raise InvalidNoteKey(f"witness key {w}: want a cosignature (0x04) key")
    if not 0 <= require <= len(wits):
        raise InvalidNoteKey(f"{require} cosignatures required, {len(wits)} witness keys given")
    note = parse_note(data)
    cp = TlogCheckpoint.parse(note.text, log.hasher.size)
    if cp.origin != log.origin:
        raise ForeignLog(f"the checkpoint is of the log {cp.origin[:100]!r}, not {log.origin!r}")
    opened = open_note(note, (*log.keys, *wits.values()), require=0)
    log_keys = {k.key for k in log.keys}
    if not any(s.key in log_keys for s in opened.verified):
        raise UnverifiedNote(f"the checkpoint is not signed by the log {log.origin}")
    cosigs = [s for s in opened.verified if s.key in wits]
    limit = (time.time() if now is None else now) + MAX_FUTURE_SECONDS
    stamps = tuple(cosignature_timestamp(s) for s in cosigs)
    for s, t in zip(cosigs, stamps, strict=True):
        if t > limit:
            raise FutureCosignature(f"the cosignature by {wits[s.key]} is dated {t}, in the future")
    if len(cosigs) < require:
        missing = sorted(str(w) for k, w in wits.items() if k not in {s.key for s in cosigs})
        raise MissingCosignatures(
            f"{len(cosigs)} of {require} required cosignatures; none by {', '.join(missing)}"
        )
    return CosignedCheckpoint(cp, opened, tuple(wits[s.key] for s in cosigs), stamps)
