"""Signed notes and checkpoints beyond the vectors: round trips, key names, limits,
and the project's PEM keys as note keys."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from cas.errors import EXIT_INTEGRITY, EXIT_USAGE
from promote.attest.keys import load_private_pem, new_key, private_pem
from promote.ledger.checkpoint import (
    MAX_EXTENSIONS,
    MalformedCheckpoint,
    TlogCheckpoint,
    ledger_origin,
    sign_checkpoint,
)
from promote.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    MAX_LINE_BYTES,
    MAX_NOTE_BYTES,
    AmbiguousKey,
    BadNoteSignature,
    InvalidNoteKey,
    MalformedNote,
    Note,
    Signer,
    UnverifiedNote,
    Verifier,
    check_key_name,
    open_note,
    parse_note,
    sign_note,
)

W = Signer.generate("witness.example/w1", COSIGNATURE_V1)
LOG = Signer.generate(ledger_origin("example.com/log"))

names = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="+"),
    min_size=1,
    max_size=40,
).filter(lambda s: len(s.encode()) <= 255 and "\x85" not in s)
lines = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=60)


@given(origin=names, size=st.integers(0, 2**64 - 1), root=st.binary(min_size=32, max_size=32),
       ext=st.lists(lines, max_size=3))  # fmt: skip
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, ext: list[str]) -> None:
    cp = TlogCheckpoint(origin, size, root, tuple(ext))
    assert TlogCheckpoint.parse(cp.body()) == cp
    assert TlogCheckpoint.parse(cp.body().encode()) == cp


@given(text=st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc"))), min_size=1),
       name=names)  # fmt: skip
def test_note_round_trip(text: list[str], name: str) -> None:
    body = "\n".join(text) + "\n"
    signer = Signer.generate(name)
    signed = sign_note(Note(body), signer).encode()
    assert parse_note(signed).encode() == signed
    assert open_note(signed, [signer.verifier()]).text == body


def _ed25519(key: object) -> Ed25519PrivateKey:
    assert isinstance(key, Ed25519PrivateKey)
    return key


@pytest.mark.parametrize(
    "name", ["", "a b", "a+b", "a\u00a0b", "a\u3000b", "a\u2028b", "a\tb", "a\x01b", "x" * 256]
)
def test_invalid_key_names(name: str) -> None:
    with pytest.raises(InvalidNoteKey) as e:
        check_key_name(name)
    assert e.value.exit_code == EXIT_USAGE
    with pytest.raises(InvalidNoteKey):
        Signer.generate(name)


def test_valid_key_names() -> None:
    for name in ("example.com/log", "oid/1.3.6.1.4.1", "é", "x" * 255):
        assert check_key_name(name) == name


def test_the_key_id_depends_on_the_name_the_type_and_the_key() -> None:
    key = _ed25519(new_key("ed25519"))
    a = Signer("a", ED25519, key).verifier()
    assert Signer("b", ED25519, key).verifier().key_id != a.key_id
    assert a.cosignature().key_id != a.key_id
    assert Signer("a", ED25519, _ed25519(new_key("ed25519"))).verifier().key_id != a.key_id


def test_pem_keys_are_note_keys() -> None:
    pem = private_pem(new_key("ed25519"))
    key = _ed25519(load_private_pem(pem))
    signer = Signer("example.com/log", ED25519, key)
    assert Signer.parse(signer.skey()).verifier() == signer.verifier()
    assert Verifier.from_public_key("example.com/log", key.public_key()) == signer.verifier()


def test_limits() -> None:
    sig = sign_note(Note("a\n"), LOG).signatures[0]
    long_line = "— x " + "A" * MAX_LINE_BYTES + "\n"
    with pytest.raises(MalformedNote, match="longer than"):
        parse_note(b"a\n\n" + long_line.encode())
    with pytest.raises(MalformedNote, match="larger than"):
        parse_note(b"a" * MAX_NOTE_BYTES + b"\n\n" + sig.line().encode())
    with pytest.raises(MalformedCheckpoint, match="extension lines"):
        TlogCheckpoint("o", 1, bytes(32), ("e",) * (MAX_EXTENSIONS + 1))
    with pytest.raises(MalformedCheckpoint, match="origin is longer"):
        TlogCheckpoint("o" * 256, 1, bytes(32))


def test_signing_rules() -> None:
    with pytest.raises(MalformedNote, match="needs a timestamp"):
        W.sign(b"a\nb\nc\n")
    with pytest.raises(MalformedNote, match="no timestamp"):
        LOG.sign(b"a\n", 5)
    with pytest.raises(MalformedNote, match="three lines"):
        W.sign(b"a\n", 5)
    with pytest.raises(MalformedNote, match="end with a newline"):
        Note("no newline")
    with pytest.raises(MalformedNote, match="at least one signature"):
        Note("a\n").encode()
    with pytest.raises(InvalidNoteKey, match="Ed25519 \\(0x01\\)"):
        sign_checkpoint(TlogCheckpoint(W.name, 0, bytes(32)), W)


def test_two_different_known_keys_with_one_name_and_id_are_ambiguous() -> None:
    v = LOG.verifier()
    twin = Verifier(v.name, v.sig_type, Signer.generate(v.name).verifier().public_key)
    object.__setattr__(twin, "key_id", v.key_id)  # a forged collision
    signed = sign_note(Note("a\n"), LOG).encode()
    with pytest.raises(AmbiguousKey):
        open_note(signed, [v, twin])
    assert open_note(signed, [v, v]).verified  # the same key twice is one key


def test_a_bad_known_signature_refuses_the_note_even_with_a_good_one() -> None:
    other = Signer.generate("other")
    text = "a\nb\nc\n"
    good = sign_note(Note(text), LOG, other)
    forged = Note(text, (good.signatures[0], sign_note(Note("x\n"), other).signatures[0]))
    with pytest.raises(BadNoteSignature) as e:
        open_note(forged, [LOG.verifier(), other.verifier()])
    assert e.value.exit_code == EXIT_INTEGRITY
    with pytest.raises(UnverifiedNote):
        open_note(good, [Signer.generate("other").verifier()])


def test_non_canonical_base64_in_a_signature_line_is_malformed() -> None:
    signed = sign_note(Note("a\n"), LOG).encode()
    assert signed.endswith(b"=\n")  # 68 bytes: one padding character
    b64_end = signed[-3:-2]
    bumped = bytes([b64_end[0] + 1])
    with pytest.raises(MalformedNote):
        parse_note(signed[:-3] + bumped + b"=\n")
