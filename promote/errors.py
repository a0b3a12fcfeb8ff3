"""The error tree of the `promote` package. Exit codes come from `cas.errors`."""

from __future__ import annotations

from cas.errors import (
    EXIT_DENIED,
    EXIT_INTEGRITY,
    EXIT_USAGE,
    CasError,
    ConflictError,
    UsageError,
)

__all__ = [
    "ConflictError",
    "Denied",
    "DiskError",
    "InvalidCapsule",
    "InvalidDocument",
    "LinkageError",
    "PolicyError",
    "PromoteError",
    "WorkspaceError",
]


class PromoteError(CasError):
    """Root of the errors raised by promotion."""


class InvalidDocument(UsageError, PromoteError):
    """A JSON document that is malformed or does not match its schema."""


class InvalidCapsule(InvalidDocument):
    """A capsule that fails its schema or its meaning (path hygiene, collisions)."""


class WorkspaceError(UsageError, PromoteError):
    """No workspace, or a broken configuration."""


class DiskError(PromoteError):
    """The disk refused a read or write of the ledger or the view (full, failing)."""

    @classmethod
    def of(cls, what: str, e: OSError) -> DiskError:
        """`what: why` as one line; a missing path or a permission is the user's to fix
        (exit 2), anything else the system refused is exit 1 (as in `cas`)."""
        err = cls(f"{what}: {e.strerror or e}")
        if isinstance(e, (FileNotFoundError, PermissionError)):
            err.exit_code = EXIT_USAGE
        return err


class LinkageError(PromoteError):
    """The evidence chain is broken: a digest missing or corrupt, CHECK not covering."""

    exit_code = EXIT_INTEGRITY


class Denied(PromoteError):
    """The policy, or the allow-list, said no."""

    exit_code = EXIT_DENIED


class PolicyError(PromoteError):
    """The policy engine failed. The gate turns this into a deny (fail closed)."""

    exit_code = EXIT_DENIED
