"""A SLSA VSA with every promotion (issue 16, item 1), on the real CLI: releases,
deletes, reverts and control promotions each store one, signed by the runner key and
named by the entry; the field's own code reads it (in-toto-attestation's schemas,
securesystemslib's DSSE); re-justification refuses one that lies."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from helpers import Flow

from cas.digest import Digest, ObjectRef
from promote.attest.dsse import load_envelope, sign_envelope
from promote.attest.keys import key_id, load_private_key
from promote.attest.statement import PAYLOAD_TYPE, load_statement
from promote.justify import Unjustified, check_entry_vsa
from promote.ledger.entry import parse_entry
from promote.ledger.files import FileLedger
from promote.pins import workspace_trust
from promote.vsa import LEVEL, TIME_VERIFIED, VSA_PREDICATE, vsa_subjects
from promote.workspace import Workspace


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """Entries: 1 a release of two files, 2 a release of a third, 3 a revert to 1
    (which only deletes the third), 4 a control promotion (a policy change)."""
    flow = Flow.init(tmp_path_factory.mktemp("vsa") / "ws")
    assert flow.release({"release/a.txt": b"alpha\n", "release/b.txt": b"beta\n"}).returncode == 0
    keep = flow.put(b"keep\n")
    check = flow.check([keep])
    cap = flow.capsule({"release/c.txt": keep[0]}, check, name="c.json")
    flow.ok("promote", cap)
    flow.ok("promote", "revert", "--to", "1")
    rego = flow.root / "control/policy/promote.rego"
    rego.write_text(rego.read_text() + "\n# a policy change, promoted by promote control\n")
    flow.control()
    return flow


def _entries(flow: Flow) -> list[Any]:
    ws = Workspace.load(flow.root)
    ledger = FileLedger(ws.ledger_dir, ws.store)
    return [parse_entry(ledger.read(n)) for n in range(1, ledger.head().seq + 1)]


def _vsa(flow: Flow, entry: Any) -> bytes:
    return bytes(Workspace.load(flow.root).store.read_bytes(entry.vsa.digest))


def _sha256(flow: Flow, ref: ObjectRef) -> str:
    return hashlib.sha256(Workspace.load(flow.root).store.read_bytes(ref.digest)).hexdigest()


def test_every_entry_names_a_vsa_signed_by_the_runner(flow: Flow) -> None:
    runner = load_private_key(flow.root / ".promote/keys/runner.pem")
    trust = workspace_trust(Workspace.load(flow.root))
    entries = _entries(flow)
    assert len(entries) >= 4
    for entry in entries:
        env = load_envelope(_vsa(flow, entry))
        assert env.payload_type == PAYLOAD_TYPE
        assert [s.keyid for s in env.signatures] == [key_id(runner.public_key())]
        assert env.signatures[0].keyid == entry.doc["signature"]["keyid"]
        st = load_statement(env.payload)
        p = st.predicate
        assert st.predicate_type == VSA_PREDICATE
        assert p["verifier"] == {"id": "https://cas-promote.invalid/runner/demo-runner"}
        assert p["timeVerified"] == TIME_VERIFIED  # deterministic, documented
        assert p["resourceUri"] == f"promote:entry/{entry.seq}"
        assert p["verificationResult"] == "PASSED" and p["verifiedLevels"] == [LEVEL]
        assert not any(lv.startswith("SLSA_") for lv in p["verifiedLevels"])
        decision = json.loads(
            Workspace.load(flow.root).store.read_bytes(
                Digest.parse(entry.doc["decision"]["digest"])
            )
        )
        policy = ObjectRef.from_dict(decision["policy"])
        assert p["policy"] == {
            "uri": f"cas:{policy.digest}",
            "digest": {"blake3": policy.digest.hex, "sha256": _sha256(flow, policy)},
        }
        assert p["inputAttestations"] == [
            {
                "uri": f"cas:{r.digest}",
                "digest": {"blake3": r.digest.hex, "sha256": _sha256(flow, r)},
            }
            for r in entry.evidence
        ]
        want = vsa_subjects(entry.doc)
        assert [(s.name, s.digests) for s in st.subjects] == [
            (w.name, {"blake3": w.ref.digest.hex, "sha256": _sha256(flow, w.ref)}) for w in want
        ]
        check_entry_vsa(Workspace.load(flow.root).store, entry, trust, trust)


def test_subjects_per_kind_of_entry(flow: Flow) -> None:
    release, add, revert, control = _entries(flow)[:4]
    names = [
        [s.name for s in load_statement(load_envelope(_vsa(flow, e)).payload).subjects]
        for e in (release, add, revert, control)
    ]
    assert names[0] == ["release/a.txt", "release/b.txt"]
    assert names[1] == ["release/c.txt"]
    assert names[2] == ["promote-state"]  # the revert only deletes c.txt: the state after
    assert names[3] == ["control/policy", "control/promote/trust.json"]


def test_a_delete_only_entry_names_the_state_after() -> None:
    ref = {"digest": "blake3:" + "ab" * 32, "size": 3}
    doc = {
        "changes": [{"path": "release/x", "from": ref, "to": None}],
        "state_after": ref,
        "policy": ref,
        "trust": ref,
    }
    [only] = vsa_subjects(doc)
    assert only.name == "promote-state" and only.ref == ObjectRef.from_dict(ref)


def test_in_toto_attestation_validates_the_vsa(flow: Flow) -> None:
    """The PyPI in-toto-attestation package's Statement and VSA predicate schemas. Its
    VSA proto declares verifiedLevels a string where the spec says an array
    (in-toto/attestation#425; the spec wins): that field is checked by hand."""
    from google.protobuf import json_format
    from in_toto_attestation.predicates.vsa.v1 import vsa_pb2
    from in_toto_attestation.v1 import statement_pb2
    from in_toto_attestation.v1.statement import Statement as ItStatement

    for entry in _entries(flow):
        doc = json.loads(load_envelope(_vsa(flow, entry)).payload)
        pb = json_format.ParseDict(doc, statement_pb2.Statement())
        ItStatement.copy_from_pb(pb).validate()
        predicate = dict(doc["predicate"])
        levels = predicate.pop("verifiedLevels")
        assert isinstance(levels, list) and all(isinstance(lv, str) for lv in levels)
        vsa = json_format.ParseDict(predicate, vsa_pb2.VerificationSummary())
        assert vsa.verifier.id and vsa.resource_uri and vsa.policy.uri
        assert vsa.verification_result == "PASSED"
        assert vsa.time_verified.seconds == 0


def test_securesystemslib_verifies_the_vsa_with_the_runner_key(flow: Flow) -> None:
    from securesystemslib.dsse import Envelope as SslibEnvelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    from promote.attest.keys import load_public_key, new_key

    pub = load_public_key(flow.root / ".promote/keys/runner.pub")
    key = SSlibKey.from_crypto(pub, keyid=key_id(pub))
    for entry in _entries(flow):
        theirs = SslibEnvelope.from_dict(json.loads(_vsa(flow, entry)))
        assert set(theirs.verify([key], 1)) == {key_id(pub)}
        other = new_key("ed25519").public_key()
        with pytest.raises(VerificationError):
            theirs.verify([SSlibKey.from_crypto(other, keyid=key_id(other))], 1)


def _resigned_vsa(flow: Flow, entry: Any, edit: dict[str, Any], key: str = "runner") -> Any:
    """The entry with its VSA replaced by an edited one, signed by the demo `key`."""
    ws = Workspace.load(flow.root)
    doc = json.loads(load_envelope(_vsa(flow, entry)).payload)
    doc["predicate"].update(edit.get("predicate", {}))
    if "subject" in edit:
        doc["subject"] = edit["subject"]
    signer = load_private_key(flow.root / f".promote/keys/{key}.pem")
    env = sign_envelope(PAYLOAD_TYPE, rfc8785.dumps(doc), [signer]).encode()
    ref = ws.store.put_bytes(env)
    body = dict(entry.doc, vsa=ref.to_dict())
    return type(entry)(rfc8785.dumps(body), body)


@pytest.mark.parametrize(
    ("edit", "key", "message"),
    [
        ({}, "checker", "not signed by the runner key"),
        ({"predicate": {"verificationResult": "FAILED"}}, "runner", "not PASSED"),
        ({"predicate": {"resourceUri": "promote:entry/99"}}, "runner", "not entry 1"),
        ({"predicate": {"verifier": {"id": "https://x.invalid/v"}}}, "runner", "verifier"),
        ({"predicate": {"inputAttestations": []}}, "runner", "inputAttestations"),
        (
            {"subject": [{"name": "release/a.txt", "digest": {"sha256": "00" * 32}}]},
            "runner",
            "subjects are not exactly",
        ),
    ],
)
def test_justify_refuses_a_vsa_that_lies(
    flow: Flow, edit: dict[str, Any], key: str, message: str
) -> None:
    ws = Workspace.load(flow.root)
    trust = workspace_trust(ws)
    entry = _resigned_vsa(flow, _entries(flow)[0], edit, key)
    with pytest.raises(Unjustified, match=message):
        check_entry_vsa(ws.store, entry, trust, trust)


def test_justify_checks_the_sha256_against_the_bytes(flow: Flow) -> None:
    ws = Workspace.load(flow.root)
    entry = _entries(flow)[0]
    doc = json.loads(load_envelope(_vsa(flow, entry)).payload)
    doc["subject"][0]["digest"]["sha256"] = "00" * 32
    bad = _resigned_vsa(flow, entry, {"subject": doc["subject"]})
    trust = workspace_trust(ws)
    with pytest.raises(Unjustified, match=r"sha256 of subject 'release/a\.txt'"):
        check_entry_vsa(ws.store, bad, trust, trust)


def test_the_vsa_is_deterministic(tmp_path: Path) -> None:
    """The same promotion in two workspaces with the same keys: the same VSA bytes."""
    one = Flow.init(tmp_path / "one")
    two = Flow.init(tmp_path / "two", keys_from=one)
    for f in (one, two):
        assert f.release({"release/a.txt": b"same\n"}).returncode == 0
    assert _vsa(one, _entries(one)[0]) == _vsa(two, _entries(two)[0])
