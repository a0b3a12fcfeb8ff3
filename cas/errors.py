"""The error tree of the `cas` package.

Every error a user can cause or meet is a :class:`CasError`. Each class carries the
process exit code the CLIs use for it, so the mapping lives in one place.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFLICT",
    "EXIT_DENIED",
    "EXIT_INTEGRITY",
    "EXIT_INTERNAL",
    "EXIT_OK",
    "EXIT_USAGE",
    "CasError",
    "ConflictError",
    "DigestMismatch",
    "IntegrityError",
    "InvalidDigest",
    "ObjectMissing",
    "StoreNotFound",
    "UsageError",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_DENIED = 4
EXIT_CONFLICT = 5


class CasError(Exception):
    """Root of every error raised on purpose by this project."""

    exit_code = EXIT_INTERNAL


class UsageError(CasError):
    """Bad input from the user: a missing file, a malformed argument."""

    exit_code = EXIT_USAGE


class InvalidDigest(UsageError):
    """A digest string that is not `blake3:<64 lowercase hex>`."""

    def __init__(self, text: str, why: str) -> None:
        shown = text if len(text) <= 80 else text[:77] + "..."
        super().__init__(f"invalid digest {shown!r}: {why}")
        self.text = text


class StoreNotFound(UsageError):
    """The store directory does not exist or is not a store."""


class IntegrityError(CasError):
    """Stored bytes do not match their name, or something promised is missing."""

    exit_code = EXIT_INTEGRITY


class ObjectMissing(IntegrityError):
    """A digest that the store does not hold."""

    def __init__(self, digest: object) -> None:
        super().__init__(f"object {digest} is not in the store")
        self.digest = digest


class DigestMismatch(IntegrityError):
    """An object's bytes hash to something other than its name."""

    def __init__(self, expected: object, got: object, size: int) -> None:
        super().__init__(f"object {expected} is corrupt: its bytes hash to {got} ({size} bytes)")
        self.expected = expected
        self.got = got
        self.size = size


class ConflictError(CasError):
    """Someone else changed the state first, or holds the lock."""

    exit_code = EXIT_CONFLICT
