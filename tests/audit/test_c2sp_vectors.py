"""The C2SP formats against published vectors (tests/audit/c2sp_vectors.json, each with
its source): our encoder reproduces the expected bytes, our verifier accepts them and
refuses their mutations."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from promote.ledger.checkpoint import MalformedCheckpoint, TlogCheckpoint
from promote.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    BadNoteSignature,
    InvalidNoteKey,
    MalformedNote,
    Note,
    NoteSignature,
    Signer,
    UnverifiedNote,
    Verifier,
    cosignature_message,
    cosignature_timestamp,
    open_note,
    parse_note,
    sign_note,
)

V: dict[str, Any] = json.loads(
    (Path(__file__).parent / "c2sp_vectors.json").read_text(encoding="utf-8")
)
NOTE = V["signed_note"]
CP = V["tlog_checkpoint"]
COSIG = V["tlog_cosignature"]


def test_every_group_names_its_source() -> None:
    for section in (NOTE, CP, COSIG):
        for name, group in section.items():
            src = group["source"]
            assert src["repo"] and src["where"], name
            if src["repo"] != "this repository":
                assert len(src["commit"]) == 40 and src["path"], name


# -- signed-note --------------------------------------------------------------------


def test_spec_example_verifies_and_reencodes() -> None:
    ex = NOTE["spec_example"]
    v = Verifier.parse(ex["vkey"])
    assert (v.name, f"{v.key_id:08x}", v.sig_type) == ("example.com/foo", "530d903a", ED25519)
    assert v.vkey() == ex["vkey"]
    opened = open_note(ex["note"].encode(), [v])
    assert opened.text == ex["text"]
    assert [s.key for s in opened.verified] == [v.key]
    assert opened.note().encode() == ex["note"].encode()


def test_go_signer_reproduces_the_expected_bytes() -> None:
    ex = NOTE["go_sign"]
    signer = Signer.parse(ex["skey"])
    assert signer.skey() == ex["skey"]
    assert signer.verifier().vkey() == ex["vkey"]
    signed = sign_note(Note(ex["text"]), signer).encode()
    assert signed == ex["signed"].encode()
    assert open_note(signed, [Verifier.parse(ex["vkey"])]).text == ex["text"]


def test_signing_again_replaces_the_same_keys_signature() -> None:
    ex = NOTE["go_sign"]
    signer = Signer.parse(ex["skey"])
    stale = NoteSignature("PeterNeumann", 0xC74F20A3, b"\x00" * 64)
    assert sign_note(Note(ex["text"], (stale,)), signer).encode() == ex["signed"].encode()


@pytest.mark.parametrize("skey, vkey", NOTE["formats_key_pairs"]["pairs"])
def test_formats_key_pairs_derive_each_other(skey: str, vkey: str) -> None:
    s = Signer.parse(skey)
    assert s.skey() == skey
    assert s.verifier().vkey() == vkey
    assert Verifier.parse(vkey) == s.verifier()


def test_go_open_one_known_one_unknown() -> None:
    ex = NOTE["go_open"]
    peter, enoch = Verifier.parse(ex["peter_vkey"]), Verifier.parse(ex["enoch_vkey"])
    msg = (ex["text"] + "\n" + ex["peter_sig"] + ex["enoch_sig"]).encode()

    one = open_note(msg, [peter])
    assert [s.key for s in one.verified] == [peter.key]
    assert [s.key for s in one.unverified] == [enoch.key]  # ignored, but kept
    assert one.note().encode() == msg

    both = open_note(msg, [peter, enoch], require=2)
    assert [s.key for s in both.verified] == [peter.key, enoch.key]
    assert both.unverified == ()

    with pytest.raises(UnverifiedNote):
        open_note(msg, [])
    with pytest.raises(UnverifiedNote):
        open_note(msg, [peter], require=2)


def test_go_open_drops_repeated_lines() -> None:
    ex = NOTE["go_open"]
    peter = Verifier.parse(ex["peter_vkey"])
    msg = ex["text"] + "\n" + ex["peter_sig"] * 2 + ex["enoch_sig"] * 2
    opened = open_note(msg.encode(), [peter])
    assert len(opened.verified) == 1 and len(opened.unverified) == 1


def test_go_open_refuses_a_corrupt_known_signature() -> None:
    ex = NOTE["go_open"]
    peter = Verifier.parse(ex["peter_vkey"])
    ins = ex["invalid_signature_insert"]
    sig = ex["peter_sig"][: ins["at"]] + ins["insert"] + ex["peter_sig"][ins["at"] :]
    with pytest.raises(BadNoteSignature, match=r"PeterNeumann\+c74f20a3"):
        open_note((ex["text"] + "\n" + sig).encode(), [peter])


def test_go_open_too_many_signatures_is_malformed() -> None:
    ex = NOTE["go_open"]
    peter = Verifier.parse(ex["peter_vkey"])
    msg = ex["text"] + "\n" + ex["peter_sig"] * NOTE["go_open"]["too_many_signatures"]
    with pytest.raises(MalformedNote, match="more than 100 signatures"):
        open_note(msg.encode(), [peter])
    assert open_note((ex["text"] + "\n" + ex["peter_sig"] * 100).encode(), [peter])


@pytest.mark.parametrize(
    "msg",
    [m.encode() for m in NOTE["go_open"]["bad_messages"]]
    + [b"\xff" + (NOTE["go_open"]["text"] + "\n" + NOTE["go_open"]["peter_sig"]).encode()],
)
def test_go_bad_messages_are_malformed(msg: bytes) -> None:
    peter = Verifier.parse(NOTE["go_open"]["peter_vkey"])
    with pytest.raises(MalformedNote):
        open_note(msg, [peter])


def _mangled(key: str) -> list[str]:
    b = key.encode()
    subs = [b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)]
    bumped = [b[:i] + bytes([b[i] + 1]) + b[i + 1 :] for i in range(len(b))]
    return sorted({s.decode("latin-1") for s in subs + bumped} - {key})


def test_go_every_mangled_vkey_is_refused() -> None:
    vkey = NOTE["go_sign"]["vkey"]
    for k in [*_mangled(vkey), *NOTE["go_bad_vkeys"]["vkeys"]]:
        with pytest.raises(InvalidNoteKey):
            Verifier.parse(k)


def test_go_every_mangled_skey_is_refused() -> None:
    skey = NOTE["go_sign"]["skey"]
    for k in _mangled(skey):
        with pytest.raises(InvalidNoteKey):
            Signer.parse(k)


def test_formats_vkeys() -> None:
    ex = NOTE["formats_vkeys"]
    for case in ex["valid"]:
        v = Verifier.parse(case["vkey"])
        assert v.sig_type == case["type"] and v.vkey() == case["vkey"]
    for k in [*ex["invalid"], ex["unsupported_type_2"]]:
        with pytest.raises(InvalidNoteKey):
            Verifier.parse(k)


def test_signatures_by_unsupported_or_unknown_keys_are_kept_unverified() -> None:
    for ex in (NOTE["formats_ecdsa_note"], NOTE["spec_unknown_key"]):
        note = parse_note(ex["note"].encode())
        assert [s.name for s in note.signatures] == [ex["key_name"]]
        assert note.encode() == ex["note"].encode()
        with pytest.raises(UnverifiedNote):
            open_note(note, [Verifier.parse(NOTE["spec_example"]["vkey"])])
    assert parse_note(NOTE["formats_ecdsa_note"]["note"].encode()).signatures[0].key_id == int(
        NOTE["formats_ecdsa_note"]["key_id"], 16
    )


def test_mutations_of_a_verified_note_are_refused() -> None:
    ex = NOTE["spec_example"]
    v = Verifier.parse(ex["vkey"])
    good = ex["note"].encode()
    text_end = good.index(b"\n\n")
    for i in range(text_end):  # every byte of the text
        bad = good[:i] + bytes([good[i] ^ 0x01]) + good[i + 1 :]
        with pytest.raises((BadNoteSignature, MalformedNote)):
            open_note(bad, [v])
    # the same name with another id, or another name with the same id: unknown, not a match
    sig = parse_note(good).signatures[0]
    for other in (NoteSignature(sig.name, sig.key_id ^ 1, sig.signature),
                  NoteSignature("example.com/bar", sig.key_id, sig.signature)):  # fmt: skip
        with pytest.raises(UnverifiedNote):
            open_note(Note(ex["text"], (other,)), [v])


# -- tlog-checkpoint ----------------------------------------------------------------


def test_spec_checkpoint_example() -> None:
    ex = CP["spec_example"]
    cp = TlogCheckpoint.parse(ex["body"])
    assert (cp.origin, cp.size, cp.root.hex(), cp.extensions) == (
        ex["origin"],
        ex["size"],
        ex["root_hex"],
        (),
    )
    assert cp.body() == ex["body"]
    assert parse_note(ex["note"].encode()).text == ex["body"]


@pytest.mark.parametrize("case", CP["formats_marshal"]["cases"])
def test_formats_marshal(case: dict[str, Any]) -> None:
    cp = TlogCheckpoint(case["origin"], case["size"], case["hash_utf8"].encode())
    assert cp.body() == case["body"]
    assert TlogCheckpoint.parse(case["body"], hash_size=None) == cp
    with pytest.raises(MalformedCheckpoint, match="want 32"):
        TlogCheckpoint.parse(case["body"])


@pytest.mark.parametrize("case", CP["formats_extensions"]["cases"])
def test_formats_extension_lines(case: dict[str, Any]) -> None:
    cp = TlogCheckpoint.parse(case["body"], hash_size=None)
    assert list(cp.extensions) == case["extensions"]
    assert cp.body() == case["body"]


@pytest.mark.parametrize(
    "body",
    CP["formats_invalid"]["bodies"] + [CP["divergence"]["body"]] + CP["strict_extra"]["bodies"],
)
def test_malformed_checkpoint_bodies(body: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        TlogCheckpoint.parse(body, hash_size=None)


# -- tlog-cosignature ---------------------------------------------------------------


def test_spec_cosignature_message_and_line() -> None:
    ex = COSIG["spec_example"]
    note = parse_note(ex["note"].encode())
    assert cosignature_message(ex["timestamp"], note.text.encode()) == ex["message"].encode()
    log_sig, wit_sig = note.signatures
    assert log_sig.name == "example.com/behind-the-sofa"
    assert (wit_sig.name, f"{wit_sig.key_id:08x}") == (ex["witness_name"], ex["witness_key_id"])
    assert cosignature_timestamp(wit_sig) == ex["timestamp"]
    assert len(wit_sig.signature) == 8 + 64
    assert note.encode() == ex["note"].encode()


def test_formats_cosignature_timestamp() -> None:
    ex = COSIG["formats_timestamp"]
    raw = base64.b64decode(ex["works"]["base64"])
    sig = NoteSignature("w", int.from_bytes(raw[:4], "big"), raw[4:])
    assert cosignature_timestamp(sig) == ex["works"]["timestamp"]
    raw = base64.b64decode(ex["wrong_type"])
    with pytest.raises(MalformedNote):
        cosignature_timestamp(NoteSignature("w", int.from_bytes(raw[:4], "big"), raw[4:]))


@pytest.mark.parametrize("body", COSIG["formats_cosigner_body"]["bodies"])
def test_cosignature_covers_the_whole_body(body: str) -> None:
    skey, vkey = NOTE["formats_key_pairs"]["pairs"][0]
    signer = Signer.parse(skey).cosigner()
    v = Verifier.parse(vkey).cosignature()
    assert v.sig_type == COSIGNATURE_V1 and v.key_id != Verifier.parse(vkey).key_id
    signed = sign_note(Note(body), signer, timestamp=1679315147).encode()
    opened = open_note(signed, [v])
    assert cosignature_timestamp(opened.verified[0]) == 1679315147
    # a plain Ed25519 vkey of the same key does not take a cosignature for its own
    with pytest.raises(UnverifiedNote):
        open_note(signed, [Verifier.parse(vkey)])
    # the last character of the body (an extension line's, in the second case)
    bad = signed.replace(body.encode(), body[:-2].encode() + b"@\n", 1)
    with pytest.raises(BadNoteSignature):
        open_note(bad, [v])
