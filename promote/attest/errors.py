"""The errors of signed evidence: malformed input exits 2, untrusted evidence 3."""

from __future__ import annotations

from cas.errors import UsageError
from promote.errors import InvalidDocument, LinkageError, PromoteError

__all__ = ["InvalidEnvelope", "InvalidKey", "InvalidStatement", "InvalidTrust", "Untrusted"]


class InvalidKey(UsageError, PromoteError):
    """A key file that is unreadable, not PEM, encrypted, or not Ed25519 / ECDSA P-256."""


class InvalidEnvelope(InvalidDocument):
    """Bytes that are not a well-formed DSSE envelope, or of an unsupported payloadType."""


class InvalidStatement(InvalidDocument):
    """A payload that is not a valid in-toto Statement v1 (or one over the limits)."""


class InvalidTrust(InvalidDocument):
    """A trust-roots document (`control/promote/trust.json`) that is malformed."""


class Untrusted(LinkageError):
    """The envelope lacks the trusted signatures it needs (exit 3)."""
