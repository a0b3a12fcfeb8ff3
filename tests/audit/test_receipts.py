"""Receipts (issue 16, items 2-6): `promote receipt` in a workspace, `promote
verify-receipt` in a directory with nothing but the receipt and public keys. Each
tampered receipt is exit 3 with one line naming the broken link."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from attest.signers import signer, trust_of
from helpers import Flow, run_cli

from promote.attest.keys import load_private_key, new_key, write_key_pair
from promote.attest.trust import TRUST_PATH, load_trust


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """Three releases of release/app.txt; a receipt of each is written to receipts/."""
    flow = Flow.init(tmp_path_factory.mktemp("receipts") / "ws")
    for n in (1, 2, 3):
        assert flow.release({"release/app.txt": f"v{n}\n".encode()}).returncode == 0
        flow.ok("promote", "receipt", str(n), "-o", f"r{n}.json")
    return flow


@pytest.fixture
def offline(tmp_path: Path, flow: Flow) -> Path:
    """A fresh directory outside any workspace: the runner's public key and the files."""
    d = tmp_path / "offline"
    d.mkdir()
    shutil.copy(flow.root / ".promote/keys/runner.pub", d / "runner.pub")
    for n in (1, 2, 3):
        shutil.copy(flow.root / f"r{n}.json", d / f"r{n}.json")
        (d / f"v{n}.txt").write_bytes(f"v{n}\n".encode())
    return d


def verify(d: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return run_cli("promote", "verify-receipt", *args, cwd=d)


def refused(r: subprocess.CompletedProcess[bytes], link: str) -> str:
    """Exit 3, one line on stderr naming `link`."""
    err = r.stderr.decode()
    assert r.returncode == 3, (r.returncode, err)
    assert err.count("\n") == 1 and f"{link}: " in err, err
    return err


def edit(d: Path, name: str, change: Any) -> Path:
    doc = json.loads((d / name).read_bytes())
    change(doc)
    out = d / f"edited-{name}"
    out.write_text(json.dumps(doc))
    return out


def test_a_receipt_verifies_offline_with_the_public_key_alone(offline: Path) -> None:
    r = verify(offline, "r2.json", "--key", "runner.pub", "--artifact", "v2.txt")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("ok: entry 2 (blake3:")
    assert "release/app.txt is a subject" in r.stdout.decode()
    doc = json.loads(verify(offline, "r1.json", "--key", "runner.pub", "--json").stdout)
    assert doc["ok"] and doc["seq"] == 1 and doc["size"] == 1
    assert doc["origin"] == "cas-promote.invalid/ledger/blake3"
    assert doc["subjects"] == ["release/app.txt"]


def test_receipt_by_path_and_its_contents(flow: Flow) -> None:
    flow.ok("promote", "receipt", "release/app.txt", "-o", "by-path.json")
    doc = json.loads((flow.root / "by-path.json").read_bytes())
    assert set(doc) == {"schema", "vsa", "entry", "inclusion", "checkpoint", "key"}
    assert doc["schema"] == "promote-receipt/v1" and doc["entry"]["seq"] == 3
    assert doc["checkpoint"].startswith("cas-promote.invalid/ledger/blake3\n3\n")
    assert doc["key"]["vkey"].startswith("cas-promote.invalid/ledger/blake3+")
    # deterministic: the same ledger and key give the same receipt
    flow.ok("promote", "receipt", "3", "-o", "again.json")
    assert (flow.root / "again.json").read_bytes() == (flow.root / "by-path.json").read_bytes()
    r = flow.run("promote", "receipt", "release/none.txt", "-o", "x.json")
    assert r.returncode == 2 and b"no ledger entry points release/none.txt" in r.stderr


def test_a_swapped_artifact_is_refused(offline: Path) -> None:
    refused(verify(offline, "r2.json", "--key", "runner.pub", "--artifact", "v1.txt"), "artifact")


def test_another_key_or_another_log_is_refused(offline: Path, tmp_path: Path) -> None:
    other = Flow.init(tmp_path / "other")
    assert other.release({"release/app.txt": b"v2\n"}).returncode == 0
    other.ok("promote", "receipt", "1", "-o", offline / "theirs.json")
    # their receipt, our key: the VSA is the first link that fails
    refused(verify(offline, "theirs.json", "--key", "runner.pub"), "vsa signature")
    # our VSA and entry with their log's checkpoint (and proof)
    theirs = json.loads((offline / "theirs.json").read_bytes())

    def swap(doc: dict[str, Any]) -> None:
        doc["checkpoint"] = theirs["checkpoint"]

    refused(
        verify(offline, edit(offline, "r1.json", swap), "--key", "runner.pub"),
        "checkpoint signature",
    )
    # a log of another name
    refused(
        verify(offline, "r1.json", "--key", "runner.pub", "--origin", "example.com/other/blake3"),
        "checkpoint signature",
    )


def test_a_forked_checkpoint_is_refused(flow: Flow, offline: Path, tmp_path: Path) -> None:
    """A fork of the ledger, signed by the same runner key: its checkpoint at the same
    size has another root, and the entry is not in its tree."""
    fork = tmp_path / "fork"
    shutil.copytree(flow.root, fork, symlinks=True)
    forked = Flow(fork)
    (fork / ".promote/checkpoint.json").unlink(missing_ok=True)  # the forker's own view
    head = fork / "execution/ledger/HEAD"
    entries = sorted((fork / "execution/ledger/entries").iterdir())
    for p in entries[1:]:
        p.chmod(0o644)
        p.unlink()
    first = json.loads(entries[0].read_bytes())
    head.write_text(
        json.dumps({"seq": 1, "entry": _hash(entries[0]), "state": first["state_after"]})
    )
    assert forked.release({"release/app.txt": b"forked\n"}).returncode == 0
    forked.ok("promote", "ledger", "checkpoint", "--note", "-o", offline / "fork.note")
    note = (offline / "fork.note").read_text()
    assert note.startswith("cas-promote.invalid/ledger/blake3\n2\n")

    def swap(doc: dict[str, Any]) -> None:
        doc["checkpoint"] = note

    err = refused(
        verify(offline, edit(offline, "r2.json", swap), "--key", "runner.pub"), "inclusion"
    )
    assert "not in the tree of cas-promote.invalid/ledger/blake3 at size 2" in err


def _hash(p: Path) -> str:
    from cas.digest import hash_bytes

    return str(hash_bytes(p.read_bytes()).digest)


def test_cosignatures(flow: Flow, offline: Path, tmp_path: Path) -> None:
    """A witness on another machine: its key, its state, the log's vkey, the files."""
    witness = tmp_path / "witness"
    witness.mkdir()
    write_key_pair(witness / "w.pem", new_key())
    vkey = (
        flow.ok(
            "promote",
            "key",
            "vkey",
            ".promote/keys/runner.pub",
            "--name",
            "cas-promote.invalid/ledger/blake3",
        )
        .stdout.decode()
        .strip()
    )
    assert vkey == json.loads((offline / "r3.json").read_bytes())["key"]["vkey"]
    wkey = (
        run_cli(
            "promote",
            "key",
            "vkey",
            "w.pem",
            "--name",
            "witness.example/w1",
            "--cosigner",
            cwd=witness,
        )
        .stdout.decode()
        .strip()
    )
    (offline / "w.vkey").write_text(wkey + "\n")
    # a missing cosignature
    refused(
        verify(
            offline, "r3.json", "--key", "runner.pub", "--witnesses", "1", "--witness-key", "w.vkey"
        ),
        "cosignatures",
    )
    # the witness cosigns the checkpoint of r3 (its first: taken on trust)
    doc = json.loads((offline / "r3.json").read_bytes())
    (witness / "cp").write_text(doc["checkpoint"])
    r = run_cli(
        "promote",
        "ledger",
        "witness",
        "cp",
        "--key",
        "w.pem",
        "--name",
        "witness.example/w1",
        "--state",
        "state",
        "--log-key",
        vkey,
        "-o",
        "cosigned",
        cwd=witness,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("— witness.example/w1 ")
    doc["checkpoint"] = (witness / "cosigned").read_text()
    (offline / "cosigned.json").write_text(json.dumps(doc))
    r = verify(
        offline,
        "cosigned.json",
        "--key",
        "runner.pub",
        "--witnesses",
        "1",
        "--witness-key",
        "w.vkey",
    )
    assert r.returncode == 0, r.stderr.decode()
    assert "cosigned by witness.example/w1+" in r.stdout.decode()
    # a checkpoint of a forked ledger at the same size: the witness refuses it
    fork = json.loads((offline / "r3.json").read_bytes())["checkpoint"].split("\n")
    forged = load_private_key(flow.root / ".promote/keys/runner.pem")
    from promote.ledger.checkpoint import TlogCheckpoint, sign_checkpoint
    from promote.receipt import note_signer

    cp = TlogCheckpoint(fork[0], int(fork[1]), b"\x01" * 32)
    (witness / "forked").write_bytes(sign_checkpoint(cp, note_signer(forged, fork[0])))
    r = run_cli(
        "promote",
        "ledger",
        "witness",
        "forked",
        "--key",
        "w.pem",
        "--name",
        "witness.example/w1",
        "--state",
        "state",
        "--log-key",
        vkey,
        cwd=witness,
    )
    assert r.returncode == 3 and b"another root than last cosigned" in r.stderr


@pytest.mark.parametrize(
    ("change", "link"),
    [
        (lambda d: d["vsa"].update(payload=d["vsa"]["payload"][:-4] + "AAA="), "vsa signature"),
        (lambda d: d["entry"]["changes"][0].update(path="release/other.txt"), "entry signature"),
        (lambda d: d["entry"].update(seq=99), "entry signature"),
    ],
)
def test_tampered_receipts_name_the_broken_link(offline: Path, change: Any, link: str) -> None:
    refused(verify(offline, edit(offline, "r2.json", change), "--key", "runner.pub"), link)


def test_the_vsa_of_another_entry_is_refused(offline: Path) -> None:
    other = json.loads((offline / "r1.json").read_bytes())["vsa"]
    path = edit(offline, "r2.json", lambda d: d.update(vsa=other))
    err = refused(verify(offline, path, "--key", "runner.pub"), "vsa named by entry")
    assert "ledger entry 2 names the VSA blake3:" in err


def test_another_entry_with_this_proof_is_refused(offline: Path) -> None:
    r1 = json.loads((offline / "r1.json").read_bytes())
    path = edit(offline, "r2.json", lambda d: d.update(entry=r1["entry"], vsa=r1["vsa"]))
    refused(verify(offline, path, "--key", "runner.pub"), "inclusion")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("vsa"),
        lambda d: d.update(schema="promote-receipt/v9"),
        lambda d: d.update(checkpoint="not a note"),
        lambda d: d.update(inclusion={"schema": "x"}),
    ],
)
def test_malformed_receipts_are_exit_2(offline: Path, change: Any) -> None:
    r = verify(offline, edit(offline, "r2.json", change), "--key", "runner.pub")
    assert r.returncode == 2, r.stderr.decode()
    assert r.stderr.decode().count("\n") == 1


def test_usage(offline: Path) -> None:
    assert verify(offline, "r1.json").returncode == 2
    r = verify(offline, "r1.json", "--key", "runner.pub", "--witnesses", "2")
    assert r.returncode == 2


def test_a_key_removed_by_a_later_trust_change_is_refused(tmp_path: Path) -> None:
    """The runner key is rotated by a control promotion: a receipt the old key signed
    no longer verifies against the trust roots as they are now."""
    flow = Flow.init(tmp_path / "ws")
    assert flow.release({"release/app.txt": b"v1\n"}).returncode == 0
    flow.ok("promote", "receipt", "1", "-o", "old.json")
    shutil.copy(flow.root / TRUST_PATH, flow.root / "trust-then.json")
    keys = flow.root / ".promote/keys"
    (keys / "runner.pem").rename(flow.root / "old-runner.pem")
    (keys / "runner.pub").rename(flow.root / "old-runner.pub")
    runner = new_key()
    write_key_pair(keys / "runner.pem", runner)
    trust = load_trust((flow.root / TRUST_PATH).read_bytes())
    signers = [s for s in trust.signers if s.id != "demo-runner"]
    (flow.root / TRUST_PATH).write_bytes(
        trust_of(*signers, signer("new-runner", ["runner"], runner)).encode()
    )
    flow.control()
    assert flow.release({"release/app.txt": b"v2\n"}).returncode == 0
    flow.ok("promote", "receipt", "3", "-o", "new.json")
    r = run_cli(
        "promote", "verify-receipt", "old.json", "--trust", "trust-then.json", cwd=flow.root
    )
    assert r.returncode == 0, r.stderr.decode()
    err = refused(
        run_cli("promote", "verify-receipt", "old.json", "--trust", TRUST_PATH, cwd=flow.root),
        "trust roots",
    )
    assert "removed by a later trust change" in err
    r = run_cli("promote", "verify-receipt", "new.json", "--trust", TRUST_PATH, cwd=flow.root)
    assert r.returncode == 0, r.stderr.decode()
