"""The fast canonical path is RFC 8785 exactly (ADR 15).

`promote.canonical.canonical` writes plain documents with `json`'s C encoder and
everything else with the `rfc8785` library; `parse_canonical` parses canonical bytes
without the duplicate-key hook. Each is checked here against the reference it
replaces, on arbitrary documents and arbitrary bytes: the library's bytes, or the
library's refusal; `load_json` followed by the canonical check; the old character
loop of the depth check.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cas.digest import Digest, ObjectRef
from cas.errors import IntegrityError
from promote.attest.keys import new_key
from promote.canonical import MAX_DEPTH, _depth, canonical, load_json, parse_canonical
from promote.errors import InvalidDocument
from promote.ledger.entry import Head, build_entry, parse_entry, sign_entry
from promote.model import Change, State

# Characters where the fast path could go wrong: escapes and controls, the last
# code points before the surrogates, the BMP above them (U+E000-U+FFFF, which UTF-16
# sorts after astral characters and code point order before), astral ones.
_EDGES = st.sampled_from(
    [
        *['"', "\\", "\b", "\f", "\n", "\r", "\t", "\x00", "\x1f", "\x7f", "/", "\u2028"],
        *["\ud7ff", "\ue000", "\uf8ff", "\ufeff", "\uffff", "\U00010000", "\U0001f600"],
        *["\U0010ffff", "é", "ß", "a", "A", "z"],
    ]
)
_CHARS = st.one_of(st.characters(codec="utf-8"), _EDGES)
_TEXT = st.text(_CHARS, max_size=12)
_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 0, -1, 10**20]),
)
_KEY = new_key("ed25519")
_SCALARS = st.one_of(st.none(), st.booleans(), _INTS, _TEXT)
_DOCS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_TEXT, inner, max_size=6)),
    max_leaves=40,
)


def _reference(doc: Any) -> bytes | type[BaseException]:
    try:
        return bytes(rfc8785.dumps(doc))
    except (ValueError, TypeError, RecursionError) as e:  # the library's refusals
        return type(e)


def _ours(doc: Any) -> bytes | type[BaseException]:
    try:
        return canonical(doc)
    except (ValueError, TypeError, RecursionError) as e:  # compared type for type
        return type(e)


@settings(max_examples=1500)
@given(_DOCS)
@example({"\ue000": 1, "\U00010000": 2})  # UTF-16 puts the astral key first
@example({"a\uffff": 1, "a\U0001f600": 2, "a": 3, "": 4})
@example({"k": 2**53})  # beyond the library's integer domain: refused
@example({"k": -(2**53) + 1, "j": 2**53 - 1})
@example(['\x00\x1f\x7f"\\\b\f\n\r\t/'])
@example({"\ud800": 1})  # a lone surrogate in a key
@example(["\udfff"])  # and in a string
@example({"a": [True, False, None, {}, []]})
def test_canonical_is_the_library(doc: Any) -> None:
    assert _ours(doc) == _reference(doc)


@given(
    st.recursive(
        st.one_of(_SCALARS, st.floats(allow_nan=True, allow_infinity=True)),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.tuples(inner, inner),
            st.dictionaries(_TEXT, inner, max_size=4),
        ),
        max_leaves=20,
    )
)
@example({"x": 1.5})
@example({"x": float("nan")})
@example((1, 2))
@example({"x": b"bytes"})
@example({1: "int key"})
def test_what_the_fast_path_does_not_take_is_the_library(doc: Any) -> None:
    """Floats, tuples and other types: the library's bytes or its refusal."""
    assert _ours(doc) == _reference(doc)


def test_a_cycle_is_refused_not_chased() -> None:
    doc: dict[str, Any] = {}
    doc["self"] = doc
    with pytest.raises(RecursionError):
        canonical(doc)


@settings(max_examples=200)
@given(
    paths=st.lists(st.text(_CHARS, min_size=1, max_size=8), min_size=1, max_size=6, unique=True),
    seq=st.integers(min_value=1, max_value=2**53 - 1),
    data=st.data(),
)
def test_entry_and_state_shapes(paths: list[str], seq: int, data: st.DataObject) -> None:
    """What the ledger writes, with arbitrary paths: entries (v1, v2 signed), states
    keyed by path, heads."""

    def ref() -> ObjectRef:
        return ObjectRef(
            Digest("blake3", data.draw(st.text("0123456789abcdef", min_size=64, max_size=64))),
            data.draw(st.integers(min_value=0, max_value=2**53 - 1)),
        )

    state = State({p: ref() for p in paths})
    head = Head(seq - 1, Digest("blake3", "1" * 64) if seq > 1 else None, state.ref())
    changes = [Change(p, state.get(p), ref()) for p in paths]
    common = dict(capsule=ref(), decision=ref(), policy=ref(), state_after=ref(), changes=changes)
    v1 = build_entry(head, check_report=ref(), **common)  # type: ignore[arg-type]
    v2 = sign_entry(
        build_entry(head, evidence=[ref()], trust=ref(), vsa=ref(), **common),  # type: ignore[arg-type]
        _KEY,
    )
    for doc in (state.to_dict(), head.to_dict(), v1.doc, v2.doc):
        assert canonical(doc) == bytes(rfc8785.dumps(doc))
    for entry in (v1, v2):
        assert parse_entry(entry.data).doc == entry.doc
        assert parse_canonical(entry.data) == entry.doc


def _strict(data: bytes) -> Any:
    """The reference: `load_json`, then the canonical check; "refused" otherwise."""
    try:
        doc = load_json(data)
    except InvalidDocument:
        return "refused"
    try:
        same = bytes(rfc8785.dumps(doc)) == data
    except rfc8785.CanonicalizationError:
        same = False
    return doc if same else "refused"


_JSONISH = st.one_of(
    _DOCS.map(lambda d: json.dumps(d, ensure_ascii=False, separators=(",", ":"), sort_keys=True)),
    _DOCS.map(lambda d: json.dumps(d, ensure_ascii=False)),
    _DOCS.map(lambda d: json.dumps(d)),
    st.text(
        st.sampled_from('{}[]",:\\ 0123456789.eE-+truefalsnNaIiy\u00e9\U0001f600'), max_size=40
    ),
)


@settings(max_examples=1500)
@given(
    st.one_of(_JSONISH.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=40))
)
@example(b'{"a":1,"a":1}')  # duplicate keys, the same bytes twice
@example(b'{"a":NaN}')
@example(b"[1.5]")
@example(b"[1e2]")
@example(b"-0")
@example(b"[9007199254740992]")  # 2**53: parses, RFC 8785 cannot write it
@example(b'"\\ud800"')  # a lone surrogate, escaped
@example(b"\xef\xbb\xbf{}")  # a byte order mark
@example(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
@example(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
@example('{"\U00010000":1,"\ue000":2}'.encode())  # RFC 8785's key order
@example('{"\ue000":2,"\U00010000":1}'.encode())  # code point order: not canonical
def test_parse_canonical_is_load_json_then_the_check(data: bytes) -> None:
    want = _strict(data)
    got = parse_canonical(data)
    if isinstance(want, dict):
        assert got == want
    else:  # refused, or another value than an object
        assert got is None


def _depth_reference(text: str) -> int:
    """The character loop `_depth` replaced."""
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


@settings(max_examples=3000)
@given(st.one_of(st.text(st.sampled_from('[]{}"\\a\n'), max_size=60), _JSONISH, st.text()))
@example('"\\')  # a backslash at the end of an unterminated string
@example('"[\\"[')
@example('["\\\\"]]')
@example("]]]][")
@example('"\n[')
def test_depth_is_the_character_loop(text: str) -> None:
    assert _depth(text) == _depth_reference(text)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate key"),
        (b'{"schema":NaN}', "NaN is not valid JSON"),
        (b"\xff", "not UTF-8"),
        (b"[" * 65 + b"]" * 65, "nested deeper than 64"),
        (b'{"schema": "promote-ledger-entry/v2"}', "not a promote-ledger-entry"),
    ],
    ids=["duplicate", "nan", "not-utf8", "deep", "wrong-shape"],
)
def test_parse_entry_keeps_its_messages(data: bytes, message: str) -> None:
    with pytest.raises(IntegrityError, match=message):
        parse_entry(data)


def test_parse_entry_refuses_an_integer_rfc8785_cannot_write() -> None:
    """It parses, but RFC 8785 cannot write it: not canonical (before, the canonical
    check's ValueError escaped parse_entry)."""
    ref = ObjectRef(Digest("blake3", "2" * 64), 1)
    entry = build_entry(
        Head.genesis(),
        capsule=ref,
        check_report=ref,
        decision=ref,
        policy=ref,
        state_after=ref,
        changes=[],
    )
    assert parse_entry(entry.data).seq == 1
    data = entry.data.replace(b'"seq":1,', b'"seq":9007199254740993,')
    with pytest.raises(IntegrityError, match="not canonical"):
        parse_entry(data)
