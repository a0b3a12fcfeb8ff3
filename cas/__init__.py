"""A content-addressed artifact store keyed by BLAKE3 digests."""

from cas.backend import ObjectStore, Problem
from cas.digest import Digest, ObjectRef
from cas.errors import CasError, ConflictError, IntegrityError, UsageError
from cas.local import LocalStore

__all__ = [
    "CasError",
    "ConflictError",
    "Digest",
    "IntegrityError",
    "LocalStore",
    "ObjectRef",
    "ObjectStore",
    "Problem",
    "UsageError",
]
