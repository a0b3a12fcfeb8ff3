"""Signed ledger entries (promote-ledger-entry/v2) and the runner key: real keys, real
signatures, and an attacker who edits entry bytes or re-signs with another key."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import rfc8785
from attest.signers import signer, trust_of

from cas.digest import hash_bytes
from cas.errors import EXIT_INTEGRITY, EXIT_USAGE, IntegrityError
from promote.attest.dsse import pae
from promote.attest.errors import InvalidKey, Untrusted
from promote.attest.keys import PrivateKey, key_id, new_key, private_pem, sign, verify
from promote.attest.runner import RUNNER_KEY_ENV, load_runner_key
from promote.ledger.entry import (
    ENTRY_PAYLOAD_TYPE,
    ENTRY_SCHEMA,
    ENTRY_SCHEMA_V1,
    Entry,
    Head,
    UnsignedEntry,
    build_entry,
    entry_signature_ok,
    parse_entry,
    sign_entry,
)
from promote.model import Change

REF = hash_bytes(b"x")


def _unsigned(head: Head | None = None) -> UnsignedEntry:
    return build_entry(
        head or Head.genesis(),
        capsule=hash_bytes(b"capsule"),
        evidence=[hash_bytes(b"env1"), hash_bytes(b"env2")],
        decision=hash_bytes(b"decision"),
        policy=hash_bytes(b"policy"),
        trust=hash_bytes(b"trust"),
        vsa=hash_bytes(b"vsa"),
        state_after=hash_bytes(b"state"),
        changes=[Change("release/a", None, REF)],
    )


def test_sign_then_parse_then_verify(kind: str) -> None:
    runner = new_key(kind)
    trust = trust_of(signer("ci-runner", ["runner"], runner))
    unsigned = build_entry(
        Head.genesis(),
        capsule=hash_bytes(b"capsule"),
        evidence=[hash_bytes(b"env1")],
        decision=hash_bytes(b"decision"),
        policy=hash_bytes(b"policy"),
        trust=hash_bytes(b"trust"),
        vsa=hash_bytes(b"vsa"),
        state_after=hash_bytes(b"state"),
        changes=[Change("release/a", None, REF)],
    )
    entry = sign_entry(unsigned, runner)
    parsed = parse_entry(entry.data)
    assert parsed == entry and parsed.doc["schema"] == ENTRY_SCHEMA
    assert entry_signature_ok(parsed, trust) == "ci-runner"
    # the signature is over PAE(type, canonical(entry without signature)): recomputable
    body = {k: v for k, v in json.loads(entry.data).items() if k != "signature"}
    sig = base64.b64decode(parsed.doc["signature"]["sig"])
    assert verify(runner.public_key(), sig, pae(ENTRY_PAYLOAD_TYPE, rfc8785.dumps(body)))
    assert parsed.doc["signature"]["keyid"] == key_id(runner.public_key())
    assert parsed.evidence == [hash_bytes(b"env1")] and parsed.trust == hash_bytes(b"trust")


def _resigned(entry: Entry, doc_edit: dict[str, object], key: PrivateKey | None) -> Entry:
    """`entry` with fields replaced, re-signed with `key` (None: the old signature kept)."""
    doc = dict(entry.doc)
    doc.update(doc_edit)
    if key is None:
        return parse_entry(rfc8785.dumps(doc))
    doc.pop("signature")
    sig = sign(key, pae(ENTRY_PAYLOAD_TYPE, rfc8785.dumps(doc)))
    doc["signature"] = {
        "keyid": key_id(key.public_key()),
        "sig": base64.b64encode(sig).decode(),
    }
    return parse_entry(rfc8785.dumps(doc))


def test_an_edited_entry_no_longer_verifies(ed: PrivateKey) -> None:
    trust = trust_of(signer("runner", ["runner"], ed))
    entry = sign_entry(_unsigned(), ed)
    forged = _resigned(entry, {"changes": []}, None)
    with pytest.raises(Untrusted, match="does not verify") as e:
        entry_signature_ok(forged, trust)
    assert e.value.exit_code == EXIT_INTEGRITY


def test_a_key_outside_the_runner_role_or_unknown_is_refused(ed: PrivateKey) -> None:
    checker, stranger = new_key("ed25519"), new_key("ed25519")
    trust = trust_of(signer("runner", ["runner"], ed), signer("checker", ["checker"], checker))
    entry = sign_entry(_unsigned(), ed)
    by_checker = _resigned(entry, {"changes": []}, checker)
    with pytest.raises(Untrusted, match="'checker', which is not a runner"):
        entry_signature_ok(by_checker, trust)
    by_stranger = _resigned(entry, {"changes": []}, stranger)
    with pytest.raises(Untrusted, match="do not list"):
        entry_signature_ok(by_stranger, trust)
    # the keyid pointing at the runner with the stranger's signature does not help
    lying = dict(by_stranger.doc)
    lying["signature"] = dict(lying["signature"], keyid=key_id(ed.public_key()))
    with pytest.raises(Untrusted, match="does not verify"):
        entry_signature_ok(parse_entry(rfc8785.dumps(lying)), trust)


def test_v1_entries_parse_and_are_unsigned(ed: PrivateKey) -> None:
    v1 = build_entry(
        Head.genesis(),
        capsule=REF,
        check_report=REF,
        decision=REF,
        policy=REF,
        state_after=REF,
        changes=[],
    )
    parsed = parse_entry(v1.data)
    assert parsed.doc["schema"] == ENTRY_SCHEMA_V1 and parsed.version == 1
    assert parsed.evidence == [REF] and parsed.trust is None and not parsed.signed
    with pytest.raises(Untrusted, match="unsigned"):
        entry_signature_ok(parsed, trust_of(signer("r", ["runner"], ed)))


@pytest.mark.parametrize(
    "edit",
    [
        {"signature": None},
        {"signature": {"keyid": "ab" * 32}},
        {"signature": {"keyid": "AB" * 32, "sig": "AAAA"}},
        {"signature": {"keyid": "ab" * 32, "sig": "not base64!"}},
        {"signature": {"keyid": "ab" * 32, "sig": "AAAA", "extra": 1}},
        {"evidence": []},
        {"evidence": {"digest": "x"}},
        {"trust": None},
        {"vsa": None},
        {"vsa": {"digest": "blake3:" + "0" * 63, "size": 1}},
        {"check_report": {"digest": "blake3:" + "0" * 64, "size": 1}},
        {"schema": "promote-ledger-entry/v3"},
        {"seq": True},
    ],
)
def test_malformed_v2_entries_are_integrity_errors(ed: PrivateKey, edit: dict[str, object]) -> None:
    doc = dict(sign_entry(_unsigned(), ed).doc)  # type: ignore[arg-type]
    doc.update(edit)
    with pytest.raises(IntegrityError) as e:
        parse_entry(rfc8785.dumps(doc))
    assert e.value.exit_code == EXIT_INTEGRITY


def test_build_entry_wants_one_form() -> None:
    with pytest.raises(TypeError):
        build_entry(  # type: ignore[call-overload]
            Head.genesis(),
            capsule=REF,
            evidence=[REF],
            decision=REF,
            policy=REF,
            state_after=REF,
            changes=[],
        )


# -- the runner key -------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def test_runner_key_default_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUNNER_KEY_ENV, raising=False)
    key = new_key("ed25519")
    _write(tmp_path / ".promote/keys/runner.pem", private_pem(key), 0o600)
    assert key_id(load_runner_key(tmp_path).public_key()) == key_id(key.public_key())
    other = new_key("ecdsa-p256")
    monkeypatch.setenv(
        RUNNER_KEY_ENV, str(_write(tmp_path / "elsewhere.pem", private_pem(other), 0o400))
    )
    assert key_id(load_runner_key(tmp_path).public_key()) == key_id(other.public_key())


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_runner_key_readable_by_others_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: int
) -> None:
    monkeypatch.delenv(RUNNER_KEY_ENV, raising=False)
    _write(tmp_path / ".promote/keys/runner.pem", private_pem(new_key()), mode)
    with pytest.raises(InvalidKey, match=f"mode {mode:04o}") as e:
        load_runner_key(tmp_path)
    assert e.value.exit_code == EXIT_USAGE and "\n" not in str(e.value)


def test_runner_key_symlink_missing_and_garbage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(RUNNER_KEY_ENV, raising=False)
    with pytest.raises(InvalidKey, match="no such file"):
        load_runner_key(tmp_path)
    real = _write(tmp_path / "real.pem", private_pem(new_key()), 0o600)
    link = tmp_path / ".promote/keys/runner.pem"
    link.parent.mkdir(parents=True)
    os.symlink(real, link)
    with pytest.raises(InvalidKey, match="a symlink"):
        load_runner_key(tmp_path)
    link.unlink()
    link.mkdir()
    with pytest.raises(InvalidKey, match="not a regular file"):
        load_runner_key(tmp_path)
    link.rmdir()
    _write(link, b"-----BEGIN PRIVATE KEY-----\nnope\n", 0o600)
    with pytest.raises(InvalidKey, match="not a valid PEM private key"):
        load_runner_key(tmp_path)


def test_a_v2_entry_names_its_vsa(ed: PrivateKey) -> None:
    """Entry v2 names the VSA; it is one of the objects the entry keeps (gc roots,
    verify), and an entry without one does not parse."""
    entry = parse_entry(sign_entry(_unsigned(), ed).data)
    assert entry.vsa == hash_bytes(b"vsa")
    assert hash_bytes(b"vsa") in entry.refs()
    doc = {k: v for k, v in entry.doc.items() if k != "vsa"}
    with pytest.raises(IntegrityError):
        parse_entry(rfc8785.dumps(doc))
    with pytest.raises(TypeError):
        build_entry(  # type: ignore[call-overload]
            Head.genesis(),
            capsule=REF,
            evidence=[REF],
            decision=REF,
            policy=REF,
            trust=REF,
            state_after=REF,
            changes=[],
        )
