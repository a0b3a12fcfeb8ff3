"""Helpers for the audit tests: an in-memory commit backend, synthetic entries, keys."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cas.digest import hash_bytes
from cas.errors import ConflictError, IntegrityError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Entry, Head, build_entry, parse_entry
from promote.model import Change, State

__all__ = ["MemoryLedger", "synthetic_ledger", "write_keypair"]


class MemoryLedger(CommitBackend):
    """A commit backend that keeps its entries in a list: proofs must work on it too."""

    location = "memory"

    def __init__(self, entries: list[bytes] | None = None) -> None:
        self.data: list[bytes] = list(entries or [])
        self.reads = 0

    def head(self) -> Head:
        if not self.data:
            return Head.genesis()
        return parse_entry(self.data[-1]).head()

    def read(self, seq: int) -> bytes:
        self.reads += 1
        if not 1 <= seq <= len(self.data):
            raise IntegrityError(f"ledger entry {seq} is missing")
        return self.data[seq - 1]

    def commit(self, base: Head, entry: Entry, state: State) -> Head:
        if self.head() != base:
            raise ConflictError("the ledger moved")
        self.data.append(entry.data)
        return entry.head()


def synthetic_ledger(n: int, tag: str = "", start: MemoryLedger | None = None) -> MemoryLedger:
    """`n` well-formed, hash-linked entries (appended to `start`, when given).

    `tag` changes the entries' content, so two tags give two different histories.
    """
    ledger = MemoryLedger(start.data if start else None)
    head = ledger.head()
    for _ in range(n):
        ref = hash_bytes(f"{tag}:{head.seq + 1}".encode())
        entry = build_entry(
            head,
            capsule=ref,
            check_report=ref,
            decision=ref,
            policy=ref,
            state_after=ref,
            changes=[Change("release/app.whl", None, ref)],
        )
        head = ledger.commit(head, entry, State())
    return ledger


def write_keypair(directory: Path, name: str = "log") -> tuple[Path, Path]:
    """An Ed25519 key pair as PEM files, as `openssl genpkey -algorithm ed25519` makes."""
    key = Ed25519PrivateKey.generate()
    private = directory / f"{name}.pem"
    public = directory / f"{name}.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public
