"""The one place that turns documents into bytes, and bytes into documents.

Writing: RFC 8785 (JSON Canonicalization Scheme), so the same document always gives
the same bytes and hence the same digest. The `rfc8785` library is the reference; a
document made only of dicts with plain keys, lists, strings, safe integers, booleans
and null (every document promote writes) takes the C encoder of `json` instead, which
gives the same bytes for it (ADR 15; `tests/test_canonical_fast.py` proves it with
hypothesis against the library).

Reading: strict. Non-UTF-8 bytes, duplicate keys, NaN/Infinity, documents over a size
limit and nesting deeper than a depth limit are refused with one typed error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

import rfc8785

from promote.errors import InvalidDocument

__all__ = [
    "MAX_DEPTH",
    "MAX_DOCUMENT",
    "MAX_UNTRUSTED",
    "canonical",
    "encode_plain",
    "load_json",
    "parse_canonical",
    "parse_plain",
    "pretty",
]

#: The largest document `load_json` parses: the size of what the gate itself writes and
#: content-addresses (ledger entries, pointer states, policy inputs, decisions), which
#: a 100,000-target release takes to about 47 MB. The gate refuses, before the commit
#: point, a promotion whose documents would be larger (ADR 19).
MAX_DOCUMENT = 64 << 20
#: The largest document taken from outside the ledger: a capsule, a CHECK report, a
#: release's evidence (ADR 19).
MAX_UNTRUSTED = 32 << 20
MAX_DEPTH = 64


#: The integers RFC 8785 (and the `rfc8785` library) writes: those an IEEE-754 double
#: holds exactly. The library refuses the others; so does `canonical`.
_INT_MAX = 2**53 - 1
_fast_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _plain(doc: Any) -> bool:
    """Whether `json`'s C encoder writes `doc` exactly as RFC 8785 does (ADR 15).

    True for exact dicts whose keys hold no code point from U+D800 up (where UTF-16
    order, RFC 8785's, and code point order, `sort_keys`', could differ), exact lists,
    strings, integers within +-(2**53 - 1), booleans and None. Anything else (floats,
    big integers, tuples, subclasses, other types) goes to the library, as does a
    string `encode` refuses (a lone surrogate).
    """
    if type(doc) is not dict and type(doc) is not list:
        return _plain_scalar(doc)
    stack = [doc]
    values: Iterable[Any]
    while stack:
        x = stack.pop()
        if type(x) is dict:
            for k in x:
                if type(k) is not str or not (k.isascii() or max(k, default="") < "\ud800"):
                    return False
            values = x.values()
        else:
            values = x
        for v in values:
            t = type(v)
            if t is str or v is None or t is bool:
                continue
            if t is dict or t is list:
                stack.append(v)
            elif t is not int or not -_INT_MAX <= v <= _INT_MAX:
                return False
    return True


def _plain_scalar(x: Any) -> bool:
    t = type(x)
    return t is str or x is None or t is bool or (t is int and -_INT_MAX <= x <= _INT_MAX)


def canonical(doc: Any) -> bytes:
    """The RFC 8785 canonical bytes of `doc`.

    Raises:
        rfc8785.CanonicalizationError (a ValueError): what RFC 8785 cannot write
            (NaN, infinities, integers beyond 2**53 - 1, lone surrogates, non-string
            keys, other types).
    """
    try:
        text = _fast_dumps(doc)  # first: it refuses a cycle, which `_plain` would chase
    except (TypeError, ValueError, RecursionError):
        text = None
    if text is not None and _plain(doc):
        try:
            return text.encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: the library refuses it in its own words
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


#: A string (to its closing quote, or to the end of an unterminated one: a backslash
#: escapes the next character, whatever it is), or one bracket outside strings.
_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|([][{}])', re.DOTALL)
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _depth(text: str) -> int:
    """The deepest nesting of brackets outside strings (any text, valid JSON or not):
    the regular expression skips the strings in C, Python walks only the brackets."""
    depth = deepest = 0
    for b in _STRING_OR_BRACKET.findall(text):
        if b:
            depth += _STEP[b]
            if depth > deepest:
                deepest = depth
    return deepest


def _too_deep(text: str) -> bool:
    """Whether `text` nests deeper than MAX_DEPTH (as `_depth` counts): never when it
    holds no more opening brackets than that, anywhere (counted in C)."""
    return text.count("[") + text.count("{") > MAX_DEPTH and _depth(text) > MAX_DEPTH


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
    if _too_deep(text):
        raise InvalidDocument(f"{what}: nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except InvalidDocument as e:
        raise InvalidDocument(f"{what}: {e}") from None
    except (ValueError, RecursionError) as e:
        raise InvalidDocument(f"{what}: not valid JSON: {e}") from None


def parse_canonical(data: bytes) -> dict[str, Any] | None:
    """See `parse_plain`: the object alone."""
    return parse_plain(data)[0]


def encode_plain(doc: dict[str, Any]) -> bytes:
    """`canonical(doc)` of a dict `parse_plain` returned with True, or of a part of
    one (a dict of some of its keys): RFC 8785 bytes written by the C encoder alone,
    as `_plain` holds for it."""
    return _fast_dumps(doc).encode()


def parse_plain(data: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The JSON object `data` parses to when `data` is exactly `canonical` of it and
    within the limits (`load_json` would return the same); None for anything else
    (other bytes, or another value than an object), for which the caller takes
    `load_json` and its own checks, and so its own error messages.

    Bytes equal to `canonical(doc)` hold no duplicate key (a dict has none, so its
    serialization has none) and no NaN or infinity (`canonical` refuses them), so
    `json.loads` without the duplicate-key hook parses them to what `load_json` does;
    the size and depth limits are checked first, as `load_json` checks them.

    The bool: whether the object is `_plain` (known here for ASCII bytes with no
    float and only safe integers), so `encode_plain` writes it and its parts.
    """
    if len(data) > MAX_DOCUMENT:
        return None, False
    try:
        text = data.decode("utf-8")
        if _too_deep(text):
            return None, False
        if text.isascii():
            try:
                doc = _plain_loads(text)
            except _NotPlain:
                pass
            else:
                # `json` gives exact dicts, lists, strings, bools and None; the hooks
                # refused floats and unsafe integers, and ASCII bytes hold only ASCII
                # keys: `_plain(doc)` holds, so `canonical(doc)` is `_fast_dumps(doc)`
                if type(doc) is dict and _fast_dumps(doc) == text:
                    return doc, True
                return None, False
        doc = json.loads(text)
        return (doc if type(doc) is dict and canonical(doc) == data else None), False
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, False


class _NotPlain(Exception):
    """A number `_plain` refuses: `parse_canonical` then takes the general path."""


def _no_float(text: str) -> Any:  # also NaN and the infinities, floats too
    raise _NotPlain(text)


def _safe_int(text: str) -> int:
    value = int(text) if len(text) < 18 else _INT_MAX + 1  # longer: unsafe, or -0...
    if not -_INT_MAX <= value <= _INT_MAX:
        raise _NotPlain(text)
    return value


#: `json.loads` that refuses (with `_NotPlain`) the numbers `_plain` refuses.
_plain_loads = json.JSONDecoder(
    parse_float=_no_float, parse_int=_safe_int, parse_constant=_no_float
).decode
