"""The one place that turns documents into bytes, and bytes into documents.

Writing: RFC 8785 (JSON Canonicalization Scheme) via the `rfc8785` library, so the
same document always gives the same bytes and hence the same digest.

Reading: strict. Non-UTF-8 bytes, duplicate keys, NaN/Infinity, documents over a size
limit and nesting deeper than a depth limit are refused with one typed error.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from promote.errors import InvalidDocument

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT", "canonical", "load_json", "pretty"]

#: Capsules, CHECK reports and configs are small; anything bigger is hostile.
MAX_DOCUMENT = 16 << 20
MAX_DEPTH = 64


def canonical(doc: Any) -> bytes:
    """The RFC 8785 canonical bytes of `doc`."""
    return bytes(rfc8785.dumps(doc))


def pretty(doc: Any) -> bytes:
    """Stable, human-readable JSON: sorted keys, two-space indent, final newline."""
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidDocument(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise InvalidDocument(f"{name} is not valid JSON")


def _depth(text: str) -> int:
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def load_json(
    data: bytes,
    what: str = "document",
    *,
    limit: int = MAX_DOCUMENT,
    error: type[InvalidDocument] = InvalidDocument,
) -> Any:
    """Parse JSON bytes strictly, at most `limit` bytes (capped at MAX_DOCUMENT).

    Raises:
        InvalidDocument: for every way the bytes can be wrong, with `what` named; as
            `error`, a subclass, for a format with an error type of its own.
    """
    try:
        return _load_json(data, what, min(limit, MAX_DOCUMENT))
    except InvalidDocument as e:
        if error is InvalidDocument:
            raise
        raise error(str(e)) from None


def _load_json(data: bytes, what: str, limit: int) -> Any:
    if len(data) > limit:
        raise InvalidDocument(f"{what}: larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidDocument(f"{what}: not UTF-8 (byte {e.start})") from None
    if _depth(text) > MAX_DEPTH:
        raise InvalidDocument(f"{what}: nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidDocument as e:
        raise InvalidDocument(f"{what}: {e}") from None
    except (ValueError, RecursionError) as e:
        raise InvalidDocument(f"{what}: not valid JSON: {e}") from None
