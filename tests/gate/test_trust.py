"""The decision side of ADR 10 on the real CLI: signed evidence, pinned policy and
trust roots, control promotions. Each attack is refused with its documented exit code,
and commits nothing."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import blake3
import pytest
from attest.signers import signer, trust_of
from helpers import Flow

from promote.attest.dsse import Envelope, Signature, sign_envelope
from promote.attest.keys import load_private_key, new_key, public_pem, write_key_pair
from promote.attest.statement import CHECK_PREDICATE, PAYLOAD_TYPE, Statement, Subject
from promote.attest.trust import TRUST_PATH, TrustedKey, load_trust


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow.init(tmp_path / "ws")


PASS = {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]}
UNCOVERED = "is not covered by a passing CHECK signed by the checker role"


def report(flow: Flow) -> dict:  # type: ignore[type-arg]
    return json.loads((flow.root / "execution/promote/report.json").read_bytes())


def subject(data: bytes, sha256: str | None = None) -> Subject:
    return Subject(
        "artifact",
        (
            ("blake3", blake3.blake3(data).hexdigest()),
            ("sha256", sha256 or hashlib.sha256(data).hexdigest()),
        ),
    )


def statement(data: bytes, predicate: dict | None = None, **kw: str) -> bytes:  # type: ignore[type-arg]
    return Statement.build([subject(data, **kw)], CHECK_PREDICATE, predicate or PASS).encode()


def key(flow: Flow, role: str):  # type: ignore[no-untyped-def]
    return load_private_key(flow.root / f".promote/keys/{role}.pem")


def attempt(flow: Flow, data: bytes, envelope: bytes | str) -> tuple[int, str]:
    """Put `data` and the envelope (or name an attestation digest), build a capsule
    promoting `data` at release/x with it, run the gate; (exit code, stderr). Asserts
    that a refusal changed nothing."""
    d, _ = flow.put(data)
    att = envelope if isinstance(envelope, str) else flow.put(envelope)[0]
    doc = {
        "schema": "promote-capsule/v2",
        "targets": [{"path": "release/x", "digest": d, "size": len(data)}],
        "evidence": {"attestations": [att]},
    }
    (flow.root / "attack.json").write_text(json.dumps(doc))
    before = flow.snapshot()
    r = flow.run("promote", "attack.json")
    if r.returncode != 0:
        assert flow.snapshot() == before
        assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr
    return r.returncode, r.stderr.decode()


# -- the forged CHECK report ---------------------------------------------------------


def test_a_forged_unsigned_report_is_refused_by_a_new_workspace(flow: Flow) -> None:
    d, s = flow.put(b"rogue build")
    report_digest = flow.check_v1([(d, s)])  # what any builder with `cas put` can write
    cap = flow.capsule_v1({"release/x": d}, report_digest, "--builder", "promote revert")
    before = flow.snapshot()
    r = flow.run("promote", cap)
    assert r.returncode == 4
    assert report(flow)["reasons"] == [
        f"attestation {report_digest} is unsigned: no trusted signer",
        f"target release/x ({d}) {UNCOVERED}",
    ]
    assert flow.snapshot() == before


def test_a_report_the_builder_signed_itself_is_refused(flow: Flow) -> None:
    data = b"rogue build"
    builder_signed = flow.check([flow.put(data)], key="builder")
    code, err = attempt(flow, data, builder_signed)
    assert code == 4
    assert UNCOVERED in err


def test_a_report_signed_by_an_unknown_key_is_exit_3(flow: Flow) -> None:
    data = b"rogue build"
    stranger = new_key("ecdsa-p256")
    env = sign_envelope(PAYLOAD_TYPE, statement(data), [stranger]).encode()
    code, err = attempt(flow, data, env)
    assert code == 3
    assert "not trusted: 0 of 1 distinct signers" in err and "unknown key id" in err


def test_a_signature_over_other_bytes_does_not_count(flow: Flow) -> None:
    data = b"the bytes that were checked"
    signed = sign_envelope(PAYLOAD_TYPE, statement(b"other bytes"), [key(flow, "checker")])
    swapped = Envelope(PAYLOAD_TYPE, statement(data), signed.signatures).encode()
    code, err = attempt(flow, data, swapped)
    assert code == 3
    assert "does not verify" in err


def test_a_signature_with_no_keyid_is_tried_and_still_must_verify(flow: Flow) -> None:
    data = b"app"
    signed = sign_envelope(PAYLOAD_TYPE, statement(data), [key(flow, "checker")])
    anon = Envelope(PAYLOAD_TYPE, statement(data), (Signature(signed.signatures[0].sig),))
    assert attempt(flow, data, anon.encode())[0] == 0


def test_one_key_counted_twice_does_not_meet_a_threshold_of_two(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    checker = key(flow, "checker")
    second = new_key()
    write_key_pair(flow.root / "second.pem", second)
    trust = load_trust((flow.root / TRUST_PATH).read_bytes())
    other = signer("second-checker", ["checker"], second)
    trust = trust_of(*trust.signers, other, checker=2)
    (flow.root / TRUST_PATH).write_bytes(trust.encode())  # before any entry: nothing pinned yet
    data = b"app"
    once = sign_envelope(PAYLOAD_TYPE, statement(data), [checker])
    twice = Envelope(PAYLOAD_TYPE, once.payload, once.signatures * 2)
    code, err = attempt(flow, data, twice.encode())
    assert code == 4 and UNCOVERED in err
    # a second key of the same signer does not count twice either
    doc = json.loads(trust.encode())
    for s in doc["signers"]:
        if s["id"] == "demo-checker":
            s["keys"].append(
                TrustedKey.from_pem(public_pem(second.public_key()).decode()).to_dict()
            )
    doc["signers"] = [s for s in doc["signers"] if s["id"] != "second-checker"]
    (flow.root / TRUST_PATH).write_text(json.dumps(doc))
    both = sign_envelope(PAYLOAD_TYPE, statement(data), [checker, second])
    code, err = attempt(flow, data, both.encode())
    assert code == 4 and UNCOVERED in err
    # two distinct checkers meet it
    (flow.root / TRUST_PATH).write_bytes(trust.encode())
    assert attempt(flow, data, both.encode())[0] == 0


def test_a_subject_whose_sha256_does_not_match_the_bytes_is_exit_3(flow: Flow) -> None:
    data = b"app"
    lying = statement(data, sha256=hashlib.sha256(b"something else").hexdigest())
    env = sign_envelope(PAYLOAD_TYPE, lying, [key(flow, "checker")]).encode()
    code, err = attempt(flow, data, env)
    assert code == 3
    assert "with a sha256 that does not match those bytes" in err


def test_a_subject_named_by_sha256_alone_is_matched_against_the_bytes(flow: Flow) -> None:
    data = b"app by sha256"
    st = Statement.build(
        [Subject("artifact", (("sha256", hashlib.sha256(data).hexdigest()),))],
        CHECK_PREDICATE,
        PASS,
    )
    env = sign_envelope(PAYLOAD_TYPE, st.encode(), [key(flow, "checker")]).encode()
    assert attempt(flow, data, env)[0] == 0


def test_a_wrong_payload_type_is_exit_2(flow: Flow) -> None:
    data = b"app"
    env = sign_envelope("application/json", statement(data), [key(flow, "checker")]).encode()
    code, err = attempt(flow, data, env)
    assert code == 2
    assert "payloadType 'application/json'" in err


def _raw_envelope(flow: Flow, payload: bytes) -> bytes:
    """An envelope over `payload` bytes no statement builder would write, signed."""
    env = sign_envelope(PAYLOAD_TYPE, payload, [key(flow, "checker")])
    return json.dumps(
        {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [s.to_dict() for s in env.signatures],
        }
    ).encode()


def _statement_doc(data: bytes, predicate: object) -> dict:  # type: ignore[type-arg]
    doc = json.loads(statement(data))
    doc["predicate"] = predicate
    return doc


@pytest.mark.parametrize(
    ("predicate", "message"),
    [
        ({"blob": "x" * (5 << 20)}, "statement: larger than"),
        (json.loads('{"a":' * 40 + "1" + "}" * 40), "predicate nested deeper than 32"),
        (json.loads('{"a":' * 70 + "1" + "}" * 70), "nested deeper than 64"),
        ({"status": "pass", "size": 2**60}, "beyond 2^53 - 1"),
    ],
    ids=["huge", "deep", "deeper-than-json", "big-integer"],
)
def test_a_huge_or_deep_predicate_is_exit_2(flow: Flow, predicate: object, message: str) -> None:
    data = b"app"
    payload = json.dumps(_statement_doc(data, predicate)).encode()
    code, err = attempt(flow, data, _raw_envelope(flow, payload))
    assert code == 2
    assert message in err


# -- pinned policy and trust; control promotions --------------------------------------

EXTRA = 'package promote\nimport rego.v1\n\ndeny contains "builder must be ci" if {\n\tinput.capsule.meta.builder != "ci"\n}\n'


def test_a_policy_edit_without_a_control_promotion_is_refused(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    pinned = json.loads((flow.root / "execution/ledger/entries/000000000001.json").read_bytes())
    # the attack: relax the policy so that anything passes
    (flow.root / "control/policy/promote.rego").write_text(
        "package promote\nimport rego.v1\nallow := true\ndeny := set()\n"
    )
    before = flow.snapshot()
    d, s = flow.put(b"unchecked")
    cap = flow.capsule_v1({"release/b": d}, flow.check_v1([(d, s)]))
    r = flow.run("promote", cap)
    assert r.returncode == 4
    line = r.stderr.decode()
    assert line.count("\n") == 1
    assert pinned["policy"]["digest"] in line
    assert "the workspace's policy bundle blake3:" in line
    assert "'promote control --key ADMIN_KEY'" in line
    assert flow.snapshot() == before


def test_a_control_promotion_with_the_admin_key_changes_the_policy(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    (flow.root / "control/policy/extra.rego").write_text(EXTRA)
    r = flow.ok("promote", "control", "--key", ".promote/keys/admin.pem", "--json")
    out = json.loads(r.stdout)
    assert out["status"] == "promoted" and out["changes"] == []
    entry = json.loads((flow.root / "execution/ledger/entries/000000000002.json").read_bytes())
    assert entry["changes"] == [] and entry["policy"]["digest"] == out["control"]["policy"]
    assert flow.run("promote", "ledger", "verify").returncode == 0
    # later promotions are decided by the new policy
    r = flow.release({"release/b": b"2"}, "--builder", "laptop")
    assert r.returncode == 4
    assert report(flow)["reasons"] == ["builder must be ci"]
    assert flow.release({"release/b": b"2"}, "--builder", "ci").returncode == 0
    # and promoting the same pins again is nothing to do
    r = flow.run("promote", "control")
    assert r.returncode == 2 and b"nothing to promote" in r.stderr


def test_a_control_promotion_without_the_admin_role_is_refused(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    (flow.root / "control/policy/extra.rego").write_text(EXTRA)
    before = flow.snapshot()
    r = flow.run("promote", "control", "--key", ".promote/keys/checker.pem")
    assert r.returncode == 4
    assert report(flow)["reasons"] == [
        "a control change needs an attestation of it signed by the admin role"
    ]
    stranger = new_key()
    write_key_pair(flow.root / "stranger.pem", stranger)
    r = flow.run("promote", "control", "--key", "stranger.pem")
    assert r.returncode == 3 and b"unknown key id" in r.stderr
    assert flow.snapshot() == before


def test_a_control_promotion_whose_policy_tests_fail_is_refused(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    (flow.root / "control/policy/extra_test.rego").write_text(
        "package promote_test\nimport rego.v1\nimport data.promote\n\n"
        "test_nothing_is_allowed if {\n\tnot promote.allow with input as {}\n}\n\n"
        "test_fails if {\n\tfalse\n}\n"
    )
    (flow.root / "control/policy/extra.rego").write_text(EXTRA)
    before = flow.snapshot()
    r = flow.run("promote", "control")
    assert r.returncode == 4
    assert b"the new policy's tests do not pass: 1 failed (data.promote_test.test_fails)" in (
        r.stderr
    )
    assert flow.snapshot() == before


def test_a_trust_change_needs_the_new_admins_too(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    old_admin = flow.root / ".promote/keys/admin.pem"
    new_admin = new_key()
    write_key_pair(flow.root / "new-admin.pem", new_admin)
    trust = load_trust((flow.root / TRUST_PATH).read_bytes())
    signers = [s for s in trust.signers if s.id != "demo-admin"]
    rotated = trust_of(*signers, signer("new-admin", ["admin"], new_admin))
    (flow.root / TRUST_PATH).write_bytes(rotated.encode())
    # a release now meets trust roots the ledger does not pin
    r = flow.release({"release/b": b"2"})
    assert r.returncode == 4 and b"the workspace's trust roots blake3:" in r.stderr
    before = flow.snapshot()
    # the old admin alone may not hand the keys to someone else ...
    r = flow.run("promote", "control", "--key", old_admin)
    assert r.returncode == 3
    assert b"admin threshold of the new trust roots" in r.stderr
    # ... nor the new one alone take them
    r = flow.run("promote", "control", "--key", "new-admin.pem")
    assert r.returncode == 3 and b"unknown key id" in r.stderr
    assert flow.snapshot() == before
    flow.ok("promote", "control", "--key", old_admin, "--key", "new-admin.pem")
    assert flow.release({"release/b": b"2"}).returncode == 0


def test_an_attestation_by_a_key_removed_by_a_trust_change_no_longer_counts(flow: Flow) -> None:
    data = b"app"
    old = flow.check([flow.put(data)])  # signed by the demo checker, trusted now
    assert flow.release({"release/a": b"1"}).returncode == 0
    new_checker = new_key()
    write_key_pair(flow.root / "new-checker.pem", new_checker)
    trust = load_trust((flow.root / TRUST_PATH).read_bytes())
    signers = [s for s in trust.signers if s.id != "demo-checker"]
    (flow.root / TRUST_PATH).write_bytes(
        trust_of(*signers, signer("new-checker", ["checker"], new_checker)).encode()
    )
    flow.control()
    code, err = attempt(flow, data, old)
    assert code == 3 and "unknown key id" in err
    assert attempt(flow, data, flow.check([flow.put(data)], key="new-checker.pem"))[0] == 0
