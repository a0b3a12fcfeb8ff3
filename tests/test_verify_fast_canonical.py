"""`parse_canonical`'s ASCII path (the number hooks instead of the `_plain` walk) is
the reference exactly: `load_json`, then RFC 8785 bytes equal to the input."""

from __future__ import annotations

import json
from typing import Any

import rfc8785
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cas.digest import Digest, ObjectRef
from promote.attest.dsse import pae
from promote.attest.keys import new_key
from promote.canonical import _plain, encode_plain, load_json, parse_canonical, parse_plain
from promote.errors import InvalidDocument
from promote.ledger.entry import ENTRY_PAYLOAD_TYPE, Head, build_entry, parse_entry, sign_entry
from promote.model import Change, State


def _strict(data: bytes) -> Any:
    try:
        doc = load_json(data)
    except InvalidDocument:
        return None
    try:
        same = bytes(rfc8785.dumps(doc)) == data
    except ValueError:  # the library's refusals (a lone surrogate: UnicodeEncodeError)
        same = False
    return doc if same and type(doc) is dict else None


_NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 0, 10**17, -(10**16)]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_ASCII = st.text(st.sampled_from('az"\\/\x00\x1f\x7f:,{}[] 0.e-'), max_size=6)
_DOCS = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, _ASCII),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_ASCII, inner, max_size=5)
    ),
    max_leaves=25,
)
_OBJECTS = st.dictionaries(_ASCII, _DOCS, max_size=5)


@settings(max_examples=1500)
@given(
    st.one_of(
        _OBJECTS.map(lambda d: json.dumps(d, separators=(",", ":"), sort_keys=True)),
        _OBJECTS.map(
            lambda d: json.dumps(d, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
        ),
        st.text(st.sampled_from('{}[]",:\\ 019.eE-+aNIfinty'), max_size=30),
    ).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
@example(b'{"a":NaN}')
@example(b'{"a":Infinity}')
@example(b'{"a":-Infinity}')
@example(b'{"a":1.0}')
@example(b'{"a":1e2}')
@example(b'{"a":-0}')
@example(b'{"a":9007199254740991,"b":-9007199254740991}')  # the safe bounds: canonical
@example(b'{"a":9007199254740992}')
@example(b'{"a":-9007199254740992}')
@example(b'{"a":100000000000000000000}')
@example(b'{"a":[1,2,{"b":[3]}]}')
@example(b'{"\\u00e9":1}')  # ASCII bytes, a non-ASCII key: RFC 8785 writes it raw
@example(b'{"\\ud800":1}')  # a lone surrogate, escaped
@example(b'{"a":"\\u001f"}')
@example(b'{"a":"\\u007f"}')
@example(b'{"a":"\\/"}')
@example(b'{"b":1,"a":2}')  # keys out of order
@example(b'{"a":1} ')
def test_ascii_path_is_the_reference(data: bytes) -> None:
    want = _strict(data)
    got = parse_canonical(data)
    assert got == want
    if want is not None:
        assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)
    doc, plain = parse_plain(data)
    assert doc == got
    if plain:  # `encode_plain` is RFC 8785 for it and for every part of it
        assert doc is not None and _plain(doc) and encode_plain(doc) == data
        for drop in doc:
            part = {k: v for k, v in doc.items() if k != drop}
            assert encode_plain(part) == bytes(rfc8785.dumps(part))


def test_canonical_objects_parse() -> None:
    data = b'{"a":[1,-9007199254740991,null,true,false,"x\\u001fy"],"b":{"c":"d"}}'
    assert parse_canonical(data) == {
        "a": [1, -9007199254740991, None, True, False, "x\x1fy"],
        "b": {"c": "d"},
    }


def test_a_parsed_entry_signs_the_canonical_body() -> None:
    key = new_key("ed25519")
    ref = ObjectRef(Digest.parse("blake3:" + "a" * 64), 7)
    changes = [Change("app/bin", None, ref)]
    state = State({"app/bin": ref})
    unsigned = build_entry(
        Head.genesis(),
        capsule=ref,
        evidence=[ref],
        decision=ref,
        policy=ref,
        state_after=state.ref(),
        changes=changes,
        trust=ref,
        vsa=ref,
    )
    signed = sign_entry(unsigned, key)
    parsed = parse_entry(signed.data)
    assert parsed._parsed.get("plain") is True
    body = {k: v for k, v in parsed.doc.items() if k != "signature"}
    want = pae(ENTRY_PAYLOAD_TYPE, bytes(rfc8785.dumps(body)))
    assert parsed.signed_bytes() == want == signed.signed_bytes()
