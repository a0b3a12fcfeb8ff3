"""Verified copies of objects out of the store."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cas.backend import ObjectStore
from cas.digest import Digest
from cas.errors import UsageError
from cas.fsutil import fsync_dir

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
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{output.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(parent)
