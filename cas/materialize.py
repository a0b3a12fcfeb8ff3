"""Verified copies of objects out of the store."""

from __future__ import annotations

from pathlib import Path

from cas.backend import ObjectStore
from cas.digest import Digest
from cas.errors import UsageError
from cas.fsutil import atomic_write

__all__ = ["copy_object"]


def copy_object(store: ObjectStore, digest: Digest, output: Path, mode: int = 0o644) -> None:
    """Write a verified copy of `digest` to `output`, atomically.

    The bytes go to a temp file beside `output` and are renamed into place only once
    they re-hash to `digest`, so `output` never holds unverified bytes.

    Raises:
        UsageError: `output` is a directory or its parent does not exist.
        ObjectMissing, DigestMismatch: from the store.
    """
    if output.is_dir():
        raise UsageError(f"{output}: is a directory")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{parent}: no such directory")
    chunks = store.open(digest)  # fails early when the object is missing
    atomic_write(output, chunks, mode)
