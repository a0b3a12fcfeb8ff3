"""Digests and sized references.

The text form of a digest always names its algorithm: `blake3:<64 lowercase hex>`.
Parsing is strict, so a digest can never be mistaken for (or turned into) a path.
"""

from __future__ import annotations

import re
from typing import Any

import blake3

from cas.errors import InvalidDigest, UsageError

__all__ = ["ALGORITHM", "Digest", "ObjectRef", "hash_bytes", "hashed_ref", "hasher"]

ALGORITHM = "blake3"
_HEX_LEN = {"blake3": 64}
_HEX = re.compile(r"[0-9a-f]+")
#: The whole text of a valid digest, checked in one C call (`Digest.parse`'s fast path;
#: anything it does not match takes the per-part checks and their error messages).
_TEXT = re.compile(r"blake3:[0-9a-f]{64}")


def _check_hex(algorithm: str, value: str) -> None:
    want = _HEX_LEN.get(algorithm)
    if want is None:
        raise InvalidDigest(f"{algorithm}:{value}", "unknown algorithm")
    if not isinstance(value, str) or len(value) != want or not _HEX.fullmatch(value):
        raise InvalidDigest(f"{algorithm}:{value}", f"want {want} lowercase hex digits")


class _Frozen:
    """Value objects: compared, ordered and hashed by their fields, immutable.

    Plain classes rather than attrs, whose import is a fifth of `cas put`'s start-up.
    """

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self._fields)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._key())

    def __repr__(self) -> str:
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({inner})"

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._key()))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() != other._key()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() < other._key()

    def __le__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() <= other._key()

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() > other._key()

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, _Frozen) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() >= other._key()


_set = object.__setattr__


class Digest(_Frozen):
    """A content digest: the algorithm and the lowercase hex of the hash."""

    __slots__ = ("algorithm", "hex")
    _fields = ("algorithm", "hex")
    algorithm: str
    hex: str

    def __init__(self, algorithm: str, hex: str) -> None:
        _check_hex(algorithm, hex)
        _set(self, "algorithm", algorithm)
        _set(self, "hex", hex)

    @classmethod
    def parse(cls, text: object) -> Digest:
        """Parse `blake3:<hex>`.

        Raises:
            InvalidDigest: for anything else, including surrounding whitespace.
        """
        if type(text) is str and _TEXT.fullmatch(text):
            d = Digest.__new__(Digest)
            _set(d, "algorithm", ALGORITHM)
            _set(d, "hex", text[7:])
            return d
        if not isinstance(text, str):
            raise InvalidDigest(repr(text), "not a string")
        algorithm, sep, hexpart = text.partition(":")
        if not sep:
            raise InvalidDigest(text, "missing the 'blake3:' prefix")
        if algorithm not in _HEX_LEN:
            raise InvalidDigest(text, f"unknown algorithm {algorithm!r}")
        return cls(algorithm, hexpart)

    def _key(self) -> tuple[Any, ...]:
        return (self.algorithm, self.hex)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class ObjectRef(_Frozen):
    """A digest together with the size of the bytes it names."""

    __slots__ = ("digest", "size")
    _fields = ("digest", "size")
    digest: Digest
    size: int

    def __init__(self, digest: Digest, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise UsageError(f"invalid size {size!r}: want a non-negative integer")
        _set(self, "digest", digest)
        _set(self, "size", size)

    @classmethod
    def from_dict(cls, data: Any) -> ObjectRef:
        """Build from `{"digest": ..., "size": ...}` without touching `data`."""
        if type(data) is dict and len(data) == 2 and "digest" in data and "size" in data:
            size = data["size"]
            if type(size) is int and size >= 0 and cls is ObjectRef:  # the common case
                ref = ObjectRef.__new__(ObjectRef)
                _set(ref, "digest", Digest.parse(data["digest"]))
                _set(ref, "size", size)
                return ref
        elif not isinstance(data, dict) or set(data) != {"digest", "size"}:
            raise UsageError("an object reference is {'digest', 'size'}")
        return cls(Digest.parse(data["digest"]), data["size"])

    def _key(self) -> tuple[Any, ...]:
        return (self.digest, self.size)

    def to_dict(self) -> dict[str, Any]:
        return {"digest": str(self.digest), "size": self.size}


def hashed_ref(hexdigest: str, size: int) -> ObjectRef:
    """The reference of bytes that blake3 just hashed to `hexdigest` (its own output,
    so not validated again: the dedup path builds one per file)."""
    d = Digest.__new__(Digest)
    _set(d, "algorithm", ALGORITHM)
    _set(d, "hex", hexdigest)
    ref = ObjectRef.__new__(ObjectRef)
    _set(ref, "digest", d)
    _set(ref, "size", size)
    return ref


def hasher() -> Any:
    """A fresh incremental BLAKE3 hasher."""
    return blake3.blake3()


def hash_bytes(data: bytes) -> ObjectRef:
    """The reference of an in-memory byte string."""
    return hashed_ref(blake3.blake3(data).hexdigest(), len(data))
