from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import InvalidDigest, UsageError

GOOD = "blake3:" + "0123456789abcdef" * 4


def test_round_trip() -> None:
    d = Digest.parse(GOOD)
    assert str(d) == GOOD
    assert d.algorithm == "blake3"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "blake3:",
        "0123456789abcdef" * 4,
        "BLAKE3:" + "0" * 64,
        "blake3:" + "A" * 64,
        "blake3:" + "0" * 63,
        "blake3:" + "0" * 65,
        "sha256:" + "0" * 64,
        " blake3:" + "0" * 64,
        "blake3:" + "0" * 64 + "\n",
        "blake3:../../etc/passwd",
        "blake3:" + "0" * 62 + "/x",
    ],
    ids=repr,
)
def test_bad_digests_are_refused(text: str) -> None:
    with pytest.raises(InvalidDigest):
        Digest.parse(text)


@given(st.text(max_size=80))
@example(GOOD)
@example("blake3:" + "g" * 64)
def test_parse_is_strict(text: str) -> None:
    """Anything either parses to a digest whose text is exactly the input, or is refused."""
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(d) == text


def test_object_ref_dict_round_trip() -> None:
    ref = hash_bytes(b"abc")
    assert ObjectRef.from_dict(ref.to_dict()) == ref


@pytest.mark.parametrize(
    "data",
    [
        {"digest": GOOD},
        {"digest": GOOD, "size": -1},
        {"digest": GOOD, "size": True},
        {"digest": GOOD, "size": "3"},
        {"digest": GOOD, "size": 3, "extra": 1},
        [GOOD, 3],
    ],
    ids=repr,
)
def test_bad_object_refs(data: object) -> None:
    with pytest.raises(UsageError):
        ObjectRef.from_dict(data)
