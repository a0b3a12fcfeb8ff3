"""`promote key new`, `promote attest` and `promote attest verify`, run as the real
console script in a real workspace."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from attest.signers import signer, trust_of
from helpers import Flow

from promote.attest.dsse import Envelope, load_envelope
from promote.attest.keys import load_private_key
from promote.attest.statement import CHECK_PREDICATE

PRED = {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]}


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """A workspace with a checker key (trusted) and a stranger's key (not)."""
    flow = Flow.init(tmp_path_factory.mktemp("attest") / "ws")
    out = flow.ok("promote", "key", "new", "-o", "checker.pem").stdout.decode().split()
    assert out[1:] == ["ed25519", "checker.pem", "checker.pub"]
    flow.ok("promote", "key", "new", "--kind", "ecdsa-p256", "-o", "stranger.pem")
    checker = load_private_key(flow.root / "checker.pem")
    trust = trust_of(signer("ci-checker", ["checker"], checker))
    (flow.root / "control/promote/trust.json").write_bytes(trust.encode())
    (flow.root / "app.txt").write_bytes(b"app 1.0.0\n")
    (flow.root / "pred.json").write_text(json.dumps(PRED))
    return flow


def attest(flow: Flow, key: str, *extra: str) -> tuple[str, int]:
    r = flow.ok(
        "promote", "attest", "--key", key, "--predicate-type", CHECK_PREDICATE,
        "--subject", "app.txt", *extra, "pred.json",
    )  # fmt: skip
    digest, size = r.stdout.decode().split()
    return digest, int(size)


def test_key_new_writes_a_private_file_0600_and_refuses_to_overwrite(flow: Flow) -> None:
    assert stat.S_IMODE((flow.root / "checker.pem").stat().st_mode) == 0o600
    assert (flow.root / "checker.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    before = (flow.root / "checker.pem").read_bytes()
    r = flow.run("promote", "key", "new", "-o", "checker.pem")
    assert r.returncode == 2
    assert (
        r.stderr.decode() == "promote: error: checker.pub: already exists, not overwriting a key\n"
    )
    assert (flow.root / "checker.pem").read_bytes() == before


def test_attest_puts_a_signed_envelope_and_verify_names_the_signer(flow: Flow) -> None:
    digest, size = attest(flow, "checker.pem", "-o", "env.json")
    # the explicit `attest sign` spelling is the same command, and signing is deterministic
    again = flow.ok(
        "promote", "attest", "sign", "--key", "checker.pem", "--predicate-type",
        CHECK_PREDICATE, "--subject", "app.txt", "pred.json",
    )  # fmt: skip
    assert again.stdout.decode().split() == [digest, str(size)]
    data = flow.ok("cas", "cat", digest).stdout
    assert data == (flow.root / "env.json").read_bytes()
    assert isinstance(load_envelope(data), Envelope)

    for source in (digest, "env.json"):
        r = flow.ok("promote", "attest", "verify", source, "--role", "checker")
        lines = r.stdout.decode().splitlines()
        assert lines[0] == "verified: 1 of 1 distinct signers of role checker (ci-checker)"
        assert lines[1] == f"predicate type {CHECK_PREDICATE}"
        assert lines[2].startswith("subject app.txt blake3:") and " sha256:" in lines[2]

    doc = json.loads(flow.ok("promote", "attest", "verify", digest, "--json").stdout)
    assert doc["ok"] is True and doc["signed"] == ["ci-checker"]
    assert doc["predicate"] == PRED
    assert set(doc["subjects"][0]["digest"]) == {"blake3", "sha256"}


def test_an_untrusted_signer_exits_3(flow: Flow) -> None:
    digest, _ = attest(flow, "stranger.pem")
    r = flow.run("promote", "attest", "verify", digest)
    assert r.returncode == 3
    err = r.stderr.decode()
    assert err.startswith("promote: error: attestation not trusted: 0 of 1 distinct signers")
    assert "unknown key id" in err and err.count("\n") == 1
    r = flow.run("promote", "attest", "verify", digest, "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["ok"] is False
    # trusted, but not in the role asked for
    digest, _ = attest(flow, "checker.pem")
    r = flow.run("promote", "attest", "verify", digest, "--role", "admin")
    assert r.returncode == 3
    assert "signed outside the role by ci-checker" in r.stderr.decode()


def test_tampered_and_malformed_envelopes(flow: Flow) -> None:
    attest(flow, "checker.pem", "-o", "good.json")
    doc = json.loads((flow.root / "good.json").read_bytes())
    doc["payloadType"] = "application/json"
    (flow.root / "retyped.json").write_text(json.dumps(doc))
    r = flow.run("promote", "attest", "verify", "retyped.json")
    assert r.returncode == 3 and "does not verify" in r.stderr.decode()

    (flow.root / "bad.json").write_text('{"payload": "!!", "payloadType": "x", "signatures": []}')
    r = flow.run("promote", "attest", "verify", "bad.json")
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1
    r = flow.run("promote", "attest", "verify", "blake3:" + "0" * 64)
    assert r.returncode == 3 and "not in the store" in r.stderr.decode()


def test_bad_keys_and_inputs_exit_2(flow: Flow, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    p384 = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (flow.root / "p384.pem").write_bytes(p384)
    r = flow.run(
        "promote", "attest", "--key", "p384.pem", "--predicate-type", CHECK_PREDICATE,
        "--subject", "app.txt", "pred.json",
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.decode() == (
        "promote: error: signing key p384.pem: ECDSA on curve secp384r1, want P-256 (secp256r1)\n"
    )
    r = flow.run("promote", "attest", "--key", "checker.pem", "--predicate-type", "x", "pred.json")
    assert r.returncode == 2 and "at least one --subject" in r.stderr.decode()
    r = flow.run(
        "promote", "attest", "--key", "checker.pem", "--predicate-type", "not a uri",
        "--subject", "app.txt", "pred.json",
    )  # fmt: skip
    assert r.returncode == 2 and "predicateType must be an absolute URI" in r.stderr.decode()
    r = flow.run("promote", "attest", "verify", "x.json", "--trust", "missing.json")
    assert r.returncode == 2
