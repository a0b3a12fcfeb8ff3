"""The object-store contract that every backend (local directory, S3) fulfils.

A backend only has to move raw bytes: `has`, `put`, `raw_chunks`, `iterate`,
`delete`, `size`. Verification on read, whole-file helpers and fsck live here, once,
so that every backend gets the same guarantees from the same code.
"""

from __future__ import annotations

import abc
import io
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from cas.digest import ALGORITHM, Digest, ObjectRef, _Frozen, hash_bytes, hasher
from cas.errors import CasError, DigestMismatch, IntegrityError, UsageError
from cas.fsutil import open_source

__all__ = ["CHUNK", "ObjectStore", "Problem", "verified_chunks"]

CHUNK = 1 << 20


class Problem(_Frozen):
    """One thing fsck found wrong. `kind` is a stable, documented word."""

    __slots__ = ("detail", "digest", "kind", "location")
    _fields = ("kind", "location", "detail", "digest")
    kind: str
    location: str
    detail: str
    digest: str | None

    def __init__(self, kind: str, location: str, detail: str, digest: str | None = None) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "location", location)
        object.__setattr__(self, "detail", detail)
        object.__setattr__(self, "digest", digest)

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "location": self.location,
            "digest": self.digest,
            "detail": self.detail,
        }


def verified_chunks(chunks: Iterable[bytes], digest: Digest) -> Iterator[bytes]:
    """Yield `chunks`, but hold the last one back until the whole stream verifies.

    A consumer therefore never receives the complete bytes of a corrupt object.

    Raises:
        DigestMismatch: at the end, when the bytes do not hash to `digest`.
    """
    h = hasher()
    size = 0
    pending: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        h.update(chunk)
        size += len(chunk)
        if pending is not None:
            yield pending
        pending = chunk
    got = Digest(ALGORITHM, h.hexdigest())
    if got != digest:
        raise DigestMismatch(digest, got, size)
    if pending is not None:
        yield pending


class ObjectStore(abc.ABC):
    """A content-addressed object store. Objects are immutable once named."""

    #: A human-readable location, such as a directory or `s3://bucket/prefix`.
    location: str

    @abc.abstractmethod
    def has(self, digest: Digest) -> bool:
        """Whether an object of that name exists (its bytes are not checked)."""

    @abc.abstractmethod
    def put(self, source: BinaryIO) -> ObjectRef:
        """Stream `source` into the store, hashing in the same pass.

        "Already present" is success. Never leaves a partial object under a name.
        """

    @abc.abstractmethod
    def raw_chunks(self, digest: Digest) -> Iterator[bytes]:
        """The stored bytes, unverified. Raises ObjectMissing."""

    @abc.abstractmethod
    def iterate(self) -> Iterator[Digest]:
        """Every object name in the store, in sorted order."""

    @abc.abstractmethod
    def delete(self, digest: Digest) -> None:
        """Remove an object. Only garbage collection and tests call this."""

    @abc.abstractmethod
    def size(self, digest: Digest) -> int:
        """The stored size of an object. Raises ObjectMissing."""

    @abc.abstractmethod
    def fsck(
        self, quarantine: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> list[Problem]:
        """Re-hash every object; report (and optionally set aside) what is wrong.

        `progress(done, total)` is called as objects are checked: bytes re-hashed of
        all (a local store), or objects checked of all (S3, whose listing has no sizes).
        """

    # -- helpers built on the primitives ------------------------------------

    def open(self, digest: Digest) -> Iterator[bytes]:
        """The object's bytes, verified while streaming (see `verified_chunks`)."""
        return verified_chunks(self.raw_chunks(digest), digest)

    def stat(self, digest: Digest) -> ObjectRef:
        return ObjectRef(digest, self.size(digest))

    def put_bytes(self, data: bytes) -> ObjectRef:
        ref = hash_bytes(data)
        if self.has(ref.digest) and self.size(ref.digest) == ref.size:
            return ref
        return self.put(io.BytesIO(data))

    def put_file(self, path: Path) -> ObjectRef:
        """Ingest a regular file (or anything readable, such as a FIFO).

        Raises:
            UsageError: when `path` is missing, a directory or unreadable.
        """
        fd, _ = open_source(path)
        with os.fdopen(fd, "rb", buffering=0) as f:
            return self.put(f)

    def put_many(
        self,
        sources: Iterable[str | os.PathLike[str] | BinaryIO],
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, CasError], None] | None = None,
        jobs: int | None = None,
    ) -> Iterator[ObjectRef]:
        """Ingest many sources (paths, as `put_file`, or streams, as `put`), in order.

        Each reference is yielded in input order, once its object is stored as `put`
        stores it. `progress(n)` is told the size of each source once it is stored.
        Backends do this faster, `jobs` at once; this default does one after another.

        With `on_error`, a source that fails (missing, a directory, unreadable) is
        passed to it with its index, and the others are still ingested.

        Raises:
            UsageError: without `on_error`, for a source that is missing, a directory
                or unreadable, after every source before it has been stored and yielded.
        """
        for i, source in enumerate(sources):
            try:
                if isinstance(source, (str, os.PathLike)):
                    ref = self.put_file(Path(source))
                else:
                    ref = self.put(source)
            except UsageError as e:
                if on_error is None:
                    raise
                on_error(i, e)
                continue
            if progress is not None:
                progress(ref.size)
            yield ref

    def read_bytes(self, digest: Digest, limit: int | None = None) -> bytes:
        """The whole object, verified. `limit` guards against huge objects.

        Raises:
            ObjectMissing, DigestMismatch, IntegrityError (over `limit`).
        """
        if limit is not None and self.size(digest) > limit:
            raise IntegrityError(f"object {digest} is larger than {limit} bytes")
        return b"".join(self.open(digest))

    def verify(self, ref: ObjectRef) -> None:
        """Check that `ref` is present, of its size, and re-hashes to its digest.

        Raises:
            ObjectMissing, DigestMismatch, IntegrityError (size mismatch).
        """
        size = self.size(ref.digest)
        if size != ref.size:
            raise IntegrityError(
                f"object {ref.digest} has {size} bytes, but {ref.size} were promised"
            )
        for _ in self.open(ref.digest):
            pass
