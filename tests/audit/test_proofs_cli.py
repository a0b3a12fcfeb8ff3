"""`promote ledger checkpoint | prove | verify-proof` on ledgers of real promotions."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from audit.ledgers import write_keypair
from helpers import Flow, run_cli


def release(flow: Flow, text: str) -> None:
    r = flow.release({"release/app.txt": text.encode()})
    assert r.returncode == 0, r.stderr.decode()


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """A workspace with four promotions; a checkpoint was saved after the second."""
    flow = Flow.init(tmp_path_factory.mktemp("four") / "ws")
    release(flow, "v1")
    release(flow, "v2")
    flow.ok("promote", "ledger", "checkpoint", "--json", "-o", "saved-at-2.json")
    release(flow, "v3")
    release(flow, "v4")
    return flow


@pytest.fixture
def auditor(tmp_path: Path) -> Path:
    """A directory outside any workspace: verification needs only files."""
    d = tmp_path / "auditor"
    d.mkdir()
    return d


def verify(auditor: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
    return run_cli("promote", "ledger", "verify-proof", *args, cwd=auditor)


def test_checkpoint_output(four: Flow) -> None:
    """The default is the C2SP signed note by the runner key; --json the older JSON."""
    note = four.ok("promote", "ledger", "checkpoint").stdout.decode()
    doc = json.loads(four.ok("promote", "ledger", "checkpoint", "--json").stdout)
    lines = note.split("\n")
    assert lines[:2] == ["cas-promote.invalid/ledger/blake3", "4"]
    assert base64.b64decode(lines[2]).hex() == doc["root"]
    assert lines[3] == "" and lines[4].startswith("\u2014 cas-promote.invalid/ledger/blake3 ")
    assert four.ok("promote", "ledger", "checkpoint", "--note").stdout.decode() == note
    r = four.run("promote", "ledger", "checkpoint", "--json", "--log-name", "x.example/log")
    assert r.returncode == 2 and b"--log-name goes with" in r.stdout
    assert doc["schema"] == "promote-checkpoint/v1" and doc["size"] == 4
    assert doc["signatures"] == []
    at2 = json.loads(four.ok("promote", "ledger", "checkpoint", "--size", "2", "--json").stdout)
    assert at2 == json.loads((four.root / "saved-at-2.json").read_bytes())
    # deterministic: the same ledger, the same bytes
    assert (
        four.ok("promote", "ledger", "checkpoint", "--json").stdout
        == json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
    )


def test_inclusion_proof_verifies_offline(four: Flow, auditor: Path) -> None:
    four.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "cp.json")
    four.ok(
        "promote", "ledger", "prove", "3", "-o", auditor / "p.json", "--entry-out", auditor / "e"
    )
    assert (auditor / "e").read_bytes() == (
        four.root / "execution/ledger/entries/000000000003.json"
    ).read_bytes()
    proof = json.loads((auditor / "p.json").read_bytes())
    assert proof["schema"] == "promote-inclusion-proof/v1"
    assert (proof["leaf_index"], proof["tree_size"], len(proof["path"])) == (2, 4, 2)
    r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", "e")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("ok: entry 3 (blake3:")
    r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", "e", "--json")
    assert json.loads(r.stdout)["ok"] is True
    # the proof on stdout is the same document
    assert four.ok("promote", "ledger", "prove", "3").stdout == (auditor / "p.json").read_bytes()


def test_every_entry_has_a_proof(four: Flow, auditor: Path) -> None:
    four.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "cp.json")
    for seq in range(1, 5):
        four.ok("promote", "ledger", "prove", str(seq), "-o", auditor / f"p{seq}.json")
        entry = four.root / f"execution/ledger/entries/{seq:012d}.json"
        r = verify(auditor, f"p{seq}.json", "--checkpoint", "cp.json", "--entry", entry)
        assert r.returncode == 0, r.stderr.decode()


def _proof_files(four: Flow, auditor: Path, seq: int = 2) -> None:
    four.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "cp.json")
    four.ok(
        "promote",
        "ledger",
        "prove",
        str(seq),
        "-o",
        auditor / "p.json",
        "--entry-out",
        auditor / "e",
    )


def test_rejects_a_tampered_entry(four: Flow, auditor: Path) -> None:
    _proof_files(four, auditor)
    entry = (auditor / "e").read_bytes()
    (auditor / "e").write_bytes(entry.replace(b"release/app.txt", b"release/app.exe"))
    r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", "e")
    assert r.returncode == 3
    assert b"hashes to" in r.stderr
    # rewriting the proof to name the tampered entry does not help
    proof = json.loads((auditor / "p.json").read_bytes())
    import blake3

    proof["entry"] = "blake3:" + blake3.blake3((auditor / "e").read_bytes()).hexdigest()
    (auditor / "p.json").write_text(json.dumps(proof))
    r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", "e")
    assert r.returncode == 3
    assert b"root" in r.stderr


def test_rejects_a_wrong_index(four: Flow, auditor: Path) -> None:
    _proof_files(four, auditor)
    proof = json.loads((auditor / "p.json").read_bytes())
    for index in (0, 2, 3):
        (auditor / "p.json").write_text(json.dumps({**proof, "leaf_index": index}))
        r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", "e")
        assert r.returncode == 3, index
    # another entry's bytes with this proof
    (auditor / "p.json").write_text(json.dumps(proof))
    other = four.root / "execution/ledger/entries/000000000003.json"
    r = verify(auditor, "p.json", "--checkpoint", "cp.json", "--entry", other)
    assert r.returncode == 3


def test_rejects_a_checkpoint_of_another_size(four: Flow, auditor: Path) -> None:
    _proof_files(four, auditor)
    r = verify(auditor, "p.json", "--checkpoint", four.root / "saved-at-2.json", "--entry", "e")
    assert r.returncode == 3
    assert b"tree of 4 entries" in r.stderr


def test_consistency_with_a_saved_checkpoint(four: Flow, auditor: Path) -> None:
    four.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "now.json")
    four.ok("promote", "ledger", "prove", "--consistency", "2", "-o", auditor / "c.json")
    proof = json.loads((auditor / "c.json").read_bytes())
    assert (proof["schema"], proof["old_size"], proof["new_size"]) == (
        "promote-consistency-proof/v1",
        2,
        4,
    )
    saved = four.root / "saved-at-2.json"
    r = verify(auditor, "c.json", "--old-checkpoint", saved, "--checkpoint", "now.json")
    assert r.returncode == 0, r.stderr.decode()
    assert b"extends the ledger of 2" in r.stdout
    # the checkpoints the other way round
    r = verify(auditor, "c.json", "--old-checkpoint", "now.json", "--checkpoint", saved)
    assert r.returncode == 3


def test_rejects_a_forked_log(tmp_path: Path, auditor: Path) -> None:
    """Two workspaces agree on two promotions, then part ways: the fork cannot pass."""
    honest = Flow.init(tmp_path / "honest")
    forked = Flow.init(tmp_path / "forked", keys_from=honest)  # the same signers
    for flow in (honest, forked):
        release(flow, "v1")
        release(flow, "v2")
    e = "execution/ledger/entries/000000000002.json"
    assert (honest.root / e).read_bytes() == (forked.root / e).read_bytes()
    release(honest, "v3")
    honest.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "seen-at-3.json")
    release(forked, "v3-evil")
    release(forked, "v4")

    forked.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "fork-now.json")
    forked.ok("promote", "ledger", "prove", "--consistency", "3", "-o", auditor / "c.json")
    r = verify(
        auditor, "c.json", "--old-checkpoint", "seen-at-3.json", "--checkpoint", "fork-now.json"
    )
    assert r.returncode == 3
    assert b"forked" in r.stderr
    # the shared prefix still checks out
    honest.ok(
        "promote", "ledger", "checkpoint", "--size", "2", "--json", "-o", auditor / "seen-at-2.json"
    )
    forked.ok("promote", "ledger", "prove", "--consistency", "2", "-o", auditor / "c2.json")
    r = verify(
        auditor, "c2.json", "--old-checkpoint", "seen-at-2.json", "--checkpoint", "fork-now.json"
    )
    assert r.returncode == 0, r.stderr.decode()
    # the fork's third entry has no proof against what the auditor saw
    forked.ok(
        "promote",
        *("ledger", "prove", "3", "--size", "3"),
        *("-o", auditor / "p.json", "--entry-out", auditor / "e"),
    )
    r = verify(auditor, "p.json", "--checkpoint", "seen-at-3.json", "--entry", "e")
    assert r.returncode == 3


def test_signed_checkpoints(four: Flow, auditor: Path) -> None:
    key, pub = write_keypair(auditor, "log")
    _, other_pub = write_keypair(auditor, "other")
    r = four.ok(
        "promote", "ledger", "checkpoint", "--sign-key", key, "--json", "-o", auditor / "cp.json"
    )
    cp = json.loads((auditor / "cp.json").read_bytes())
    assert json.loads(r.stdout) == cp
    assert [s["algorithm"] for s in cp["signatures"]] == ["ed25519"]
    four.ok(
        "promote", "ledger", "prove", "4", "-o", auditor / "p.json", "--entry-out", auditor / "e"
    )
    args = ("p.json", "--checkpoint", "cp.json", "--entry", "e")
    r = verify(auditor, *args, "--verify-key", pub)
    assert r.returncode == 0, r.stderr.decode()
    assert b"signature verified" in r.stdout
    r = verify(auditor, *args, "--verify-key", other_pub)
    assert r.returncode == 3
    assert b"not signed by" in r.stderr
    # a signed checkpoint whose size and root were swapped for another's
    cp2 = json.loads(four.ok("promote", "ledger", "checkpoint", "--size", "3", "--json").stdout)
    (auditor / "moved.json").write_text(json.dumps({**cp, "size": 3, "root": cp2["root"]}))
    four.ok("promote", "ledger", "prove", "3", "--size", "3", "-o", auditor / "p3.json")
    entry3 = four.root / "execution/ledger/entries/000000000003.json"
    r = verify(auditor, "p3.json", "--checkpoint", "moved.json", "--entry", entry3)
    assert r.returncode == 0  # without a key, a checkpoint is taken as given
    r = verify(
        auditor, "p3.json", "--checkpoint", "moved.json", "--entry", entry3, "--verify-key", pub
    )
    assert r.returncode == 3
    assert b"does not verify" in r.stderr
    # an unsigned checkpoint when a key is required
    four.ok("promote", "ledger", "checkpoint", "--json", "-o", auditor / "plain.json")
    r = verify(auditor, "p.json", "--checkpoint", "plain.json", "--entry", "e", "--verify-key", pub)
    assert r.returncode == 3


def test_checkpoint_refuses_a_broken_ledger(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    release(flow, "v1")
    release(flow, "v2")
    entry = flow.root / "execution/ledger/entries/000000000001.json"
    entry.chmod(0o644)
    entry.write_bytes(entry.read_bytes().replace(b"release/app.txt", b"release/app.bin"))
    for args in (("checkpoint",), ("prove", "1"), ("prove", "--consistency", "1")):
        r = flow.run("promote", "ledger", *args)
        assert r.returncode == 3, args
        assert b"does not link" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("prove",),
        ("prove", "1", "--consistency", "1"),
        ("prove", "9"),
        ("prove", "0"),
        ("prove", "--consistency", "9"),
        ("prove", "1", "--size", "9"),
        ("prove", "--consistency", "1", "--entry-out", "x"),
        ("checkpoint", "--size", "9"),
        ("checkpoint", "--sign-key", "missing.pem"),
    ],
    ids=lambda a: "-".join(a),
)
def test_usage_errors(four: Flow, args: tuple[str, ...]) -> None:
    r = four.run("promote", "ledger", *args)
    assert r.returncode == 2, r.stderr.decode()
    assert r.stderr.startswith(b"promote: error: ")
    assert b"Traceback" not in r.stderr


def test_verify_proof_usage_errors(four: Flow, auditor: Path) -> None:
    _proof_files(four, auditor)
    four.ok("promote", "ledger", "prove", "--consistency", "2", "-o", auditor / "c.json")
    (auditor / "junk.json").write_text("{")
    (auditor / "other.json").write_text('{"schema": "promote-inclusion-proof/v9"}')
    cases = [
        ("p.json", "--checkpoint", "cp.json"),  # no entry
        ("p.json", "--checkpoint", "cp.json", "--entry", "e", "--old-checkpoint", "cp.json"),
        ("c.json", "--checkpoint", "cp.json"),  # no old checkpoint
        ("c.json", "--checkpoint", "cp.json", "--old-checkpoint", "cp.json", "--entry", "e"),
        ("junk.json", "--checkpoint", "cp.json", "--entry", "e"),
        ("other.json", "--checkpoint", "cp.json", "--entry", "e"),
        ("p.json", "--checkpoint", "junk.json", "--entry", "e"),
        ("p.json", "--checkpoint", "p.json", "--entry", "e"),
        ("missing.json", "--checkpoint", "cp.json", "--entry", "e"),
        ("p.json", "--checkpoint", "cp.json", "--entry", "missing"),
        ("p.json", "--checkpoint", "cp.json", "--entry", "e", "--verify-key", "e"),
        ("p.json",),
    ]
    for args in cases:
        r = verify(auditor, *args)
        assert r.returncode == 2, (args, r.stderr.decode())
        assert b"Traceback" not in r.stderr
