"""Digests and sized references.

The text form of a digest always names its algorithm: `blake3:<64 lowercase hex>`.
Parsing is strict, so a digest can never be mistaken for (or turned into) a path.
"""

from __future__ import annotations

import re
from typing import Any

import attrs
import blake3

from cas.errors import InvalidDigest, UsageError

__all__ = ["ALGORITHM", "Digest", "ObjectRef", "hasher", "hash_bytes"]

ALGORITHM = "blake3"
_HEX_LEN = {"blake3": 64}
_HEX = re.compile(r"[0-9a-f]+")


def _check_hex(instance: Digest, attribute: attrs.Attribute[str], value: str) -> None:
    want = _HEX_LEN.get(instance.algorithm)
    if want is None:
        raise InvalidDigest(f"{instance.algorithm}:{value}", "unknown algorithm")
    if len(value) != want or not _HEX.fullmatch(value):
        raise InvalidDigest(f"{instance.algorithm}:{value}", f"want {want} lowercase hex digits")


@attrs.frozen(order=True)
class Digest:
    """A content digest: the algorithm and the lowercase hex of the hash."""

    algorithm: str
    hex: str = attrs.field(validator=_check_hex)

    @classmethod
    def parse(cls, text: object) -> Digest:
        """Parse `blake3:<hex>`.

        Raises:
            InvalidDigest: for anything else, including surrounding whitespace.
        """
        if not isinstance(text, str):
            raise InvalidDigest(repr(text), "not a string")
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigest(text, "missing the 'blake3:' prefix")
        if algorithm not in _HEX_LEN:
            raise InvalidDigest(text, f"unknown algorithm {algorithm!r}")
        return cls(algorithm, hexpart)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@attrs.frozen(order=True)
class ObjectRef:
    """A digest together with the size of the bytes it names."""

    digest: Digest
    size: int = attrs.field()

    @size.validator
    def _size_ok(self, attribute: attrs.Attribute[int], value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"invalid size {value!r}: want a non-negative integer")

    @classmethod
    def from_dict(cls, data: Any) -> ObjectRef:
        """Build from `{"digest": ..., "size": ...}` without touching `data`."""
        if not isinstance(data, dict) or set(data) != {"digest", "size"}:
            raise UsageError("an object reference is {'digest', 'size'}")
        return cls(Digest.parse(data["digest"]), data["size"])

    def to_dict(self) -> dict[str, Any]:
        return {"digest": str(self.digest), "size": self.size}


def hasher() -> Any:
    """A fresh incremental BLAKE3 hasher."""
    return blake3.blake3()


def hash_bytes(data: bytes) -> ObjectRef:
    """The reference of an in-memory byte string."""
    return ObjectRef(Digest(ALGORITHM, blake3.blake3(data).hexdigest()), len(data))
