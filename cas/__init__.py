"""A content-addressed artifact store keyed by BLAKE3 digests.

The names below load on first use, so `cas --help` and the error paths of both CLIs
do not pay for the store's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "ObjectStore": "cas.backend",
    "Problem": "cas.backend",
    "Digest": "cas.digest",
    "ObjectRef": "cas.digest",
    "CasError": "cas.errors",
    "ConflictError": "cas.errors",
    "IntegrityError": "cas.errors",
    "UsageError": "cas.errors",
    "LocalStore": "cas.local",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'cas' has no attribute {name!r}")
