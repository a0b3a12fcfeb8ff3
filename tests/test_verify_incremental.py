"""`promote ledger verify --since-checkpoint` (ADR 15): only the entries after the
workspace's checkpoint are checked, from its last entry, when the checkpoint frontier
vouches for it; anything else is checked in full, and says so.

The attacker here can write the ledger directory and `.promote/`: whatever they put
after the checkpoint is found, and a frontier they edit is not believed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from helpers import CountingLedger, Flow

from cas.digest import hash_bytes
from promote.attest.keys import load_private_key
from promote.ledger.entry import UnsignedEntry, sign_entry
from promote.ledger.files import FileLedger
from promote.verify import chain_and_justify, verify_workspace
from promote.workspace import Workspace

ENTRIES = "execution/ledger/entries"
SAVED = (".promote/checkpoint.json", ".promote/checkpoint-frontier.json")


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow.init(tmp_path / "ws")


def _verify(flow: Flow) -> tuple[list[tuple[str, str]], list[str], list[int]]:
    """In process: the findings, the notes, and the entries read."""
    ws = Workspace.load(flow.root)
    ledger = CountingLedger(ws)
    notes: list[str] = []
    found = verify_workspace(ws, ledger, view=False, since_checkpoint=True, notes=notes)
    return [(p.kind, p.location) for p in found], notes, sorted(set(ledger.seqs))


def _cli(flow: Flow, *args: str) -> tuple[int, list[tuple[str, str, str]], str]:
    r = flow.run("promote", "ledger", "verify", "--since-checkpoint", "--json", *args)
    found = json.loads(r.stdout)["problems"]
    return r.returncode, [(p["kind"], p["location"], p["detail"]) for p in found], r.stderr.decode()


def _save(flow: Flow, to: Path) -> None:
    to.mkdir()
    for name in SAVED:
        shutil.copy2(flow.root / name, to / Path(name).name)


def _restore(flow: Flow, saved: Path) -> None:
    for name in SAVED:
        shutil.copy2(saved / Path(name).name, flow.root / name)


def _size(flow: Flow) -> int:
    return int(json.loads((flow.root / SAVED[0]).read_bytes())["size"])


def _resign(flow: Flow, seq: int, key: str, change: dict[str, Any] | None = None) -> None:
    """Entry `seq`, changed and re-signed with the demo `key`, HEAD fixed to match."""
    path = flow.root / ENTRIES / f"{seq:012d}.json"
    doc = json.loads(path.read_bytes())
    doc.update(change or {})
    body = {k: v for k, v in doc.items() if k != "signature"}
    signer = load_private_key(flow.root / f".promote/keys/{key}.pem")
    data = sign_entry(UnsignedEntry(body), signer).data
    os.chmod(path, 0o644)
    path.write_bytes(data)
    head = {"seq": seq, "entry": str(hash_bytes(data).digest), "state": doc["state_after"]}
    (flow.root / "execution/ledger/HEAD").write_bytes(rfc8785.dumps(head))


def test_only_the_new_entries_are_read(flow: Flow) -> None:
    for data in (b"1", b"2", b"3"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    assert _size(flow) == 3  # each promotion moved the checkpoint
    assert _verify(flow) == ([], [], [3])  # the checkpoint's last entry, nothing before
    for data in (b"4", b"5", b"6", b"7"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    saved = flow.root.parent / "at-7"
    _save(flow, saved)
    for data in (b"8", b"9"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    _restore(flow, saved)  # a workspace that last verified at entry 7
    assert _verify(flow) == ([], [], [7, 8, 9])
    assert _size(flow) == 9  # clean: moved forward
    # the full check reads every entry
    ws = Workspace.load(flow.root)
    ledger = CountingLedger(ws)
    assert verify_workspace(ws, ledger, view=False) == []
    assert set(range(1, 10)) <= set(ledger.seqs)


@pytest.mark.parametrize("key", ["checker", "runner"], ids=["not-a-runner", "stolen-runner-key"])
def test_a_tampered_entry_after_the_checkpoint_is_found(flow: Flow, key: str) -> None:
    """Entry 2 rewritten after a checkpoint at entry 1: re-signed by a key that is not a
    runner's, or by the runner key naming entry 1's decision (an allow about another
    input)."""
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    saved = flow.root.parent / "at-1"
    _save(flow, saved)
    assert flow.release({"release/a.txt": b"2"}).returncode == 0
    _restore(flow, saved)
    first = json.loads((flow.root / ENTRIES / f"{1:012d}.json").read_bytes())
    _resign(flow, 2, key, {"decision": first["decision"]} if key == "runner" else None)
    found, notes, seqs = _verify(flow)
    assert notes == [] and seqs == [1, 2]  # incremental, from entry 1
    assert ("unjustified", "ledger entry 2") in found
    code, problems, err = _cli(flow)
    assert code == 3 and "not incremental" not in err
    assert ("unjustified", "ledger entry 2") in [(k, w) for k, w, _ in problems]
    assert _size(flow) == 1  # not moved past what failed


def test_an_appended_entry_that_does_not_link_is_found(flow: Flow) -> None:
    """An entry after the checkpoint whose prev names another entry: the frontier's
    link check refuses it, and the full check that follows reports the broken chain."""
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    assert flow.release({"release/a.txt": b"2"}).returncode == 0
    _resign(flow, 2, "runner", {"prev": "blake3:" + "0" * 64})
    code, problems, err = _cli(flow)
    assert code == 3 and "not incremental" in err
    assert ("ledger", "ledger entry 2") in [(k, w) for k, w, _ in problems]


def _edit_frontier(flow: Flow, **change: Any) -> None:
    path = flow.root / SAVED[1]
    doc = json.loads(path.read_bytes())
    doc.update(change)
    path.write_bytes(rfc8785.dumps(doc))


@pytest.mark.parametrize(
    "change",
    [
        {"stack": ["00" * 32]},  # does not rebuild the checkpoint's root
        {"last": "11" * 32},  # names another last entry
        {"size": 1},
    ],
    ids=["stack", "last", "size"],
)
def test_a_tampered_frontier_is_not_believed(flow: Flow, change: dict[str, Any]) -> None:
    for data in (b"1", b"2"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    _edit_frontier(flow, **change)
    found, notes, seqs = _verify(flow)
    assert found == [] and seqs == [1, 2]  # every entry
    assert len(notes) == 1 and notes[0].startswith("not incremental"), notes
    # the clean full check rewrote the frontier (the checkpoint did not move): the next
    # one is incremental again
    assert _verify(flow) == ([], [], [2])
    _edit_frontier(flow, **change)
    code, problems, err = _cli(flow)
    assert (code, problems) == (0, [])
    assert "ledger verify: not incremental" in err and "verifying every entry" in err


def test_a_v1_frontier_is_replaced(flow: Flow) -> None:
    """A frontier written before the spine (v1) is not believed, and the clean full
    check that follows writes a v2 one."""
    for data in (b"1", b"2"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    path = flow.root / SAVED[1]
    doc = json.loads(path.read_bytes())
    del doc["spine"]
    path.write_bytes(rfc8785.dumps(dict(doc, schema="promote-checkpoint-frontier/v1")))
    found, notes, seqs = _verify(flow)
    assert found == [] and seqs == [1, 2] and len(notes) == 1
    assert json.loads(path.read_bytes())["schema"] == "promote-checkpoint-frontier/v2"
    assert _verify(flow) == ([], [], [2])


def test_a_tampered_frontier_does_not_hide_a_tampered_entry(flow: Flow) -> None:
    """The attacker edits entry 2 and points the frontier's last entry at it: the
    frontier no longer rebuilds the checkpoint's root... unless they rewrite that too;
    either way the full check runs and finds entry 2."""
    for data in (b"1", b"2"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    _resign(flow, 2, "checker")
    data = (flow.root / ENTRIES / f"{2:012d}.json").read_bytes()
    _edit_frontier(flow, last=hash_bytes(data).digest.hex)
    code, problems, err = _cli(flow)
    assert code == 3 and "not incremental" in err
    kinds = [(k, w) for k, w, _ in problems]
    assert ("unjustified", "ledger entry 2") in kinds
    assert ("rollback", ".promote/checkpoint.json") in kinds


def test_a_truncated_or_rewritten_ledger_is_still_a_rollback(flow: Flow) -> None:
    for data in (b"1", b"2", b"3"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    (flow.root / ENTRIES / f"{3:012d}.json").unlink()
    _resign(flow, 2, "runner")  # HEAD fixed to entry 2: a consistent, shorter chain
    code, problems, err = _cli(flow)
    assert code == 3 and "not incremental" in err
    assert [(k, w) for k, w, _ in problems] == [("rollback", ".promote/checkpoint.json")]
    assert "fewer than the 3" in problems[0][2]


def test_a_rewritten_chain_under_the_checkpoint_is_a_rollback(flow: Flow) -> None:
    """The tail dropped and a new genuine promotion on top: the size is back, the
    checkpoint's last entry is not the one there now."""
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    assert flow.release({"release/a.txt": b"2"}).returncode == 0
    saved = flow.root.parent / "at-2"
    _save(flow, saved)
    (flow.root / ENTRIES / f"{2:012d}.json").unlink()
    _resign(flow, 1, "runner")
    for name in SAVED:
        (flow.root / name).unlink()
    assert flow.run("promote", "recover").returncode == 0
    assert flow.release({"release/a.txt": b"other"}).returncode == 0
    _restore(flow, saved)
    code, problems, err = _cli(flow)
    assert code == 3 and "not incremental" in err
    assert [(k, w) for k, w, _ in problems] == [("rollback", ".promote/checkpoint.json")]
    assert "rewritten" in problems[0][2]


def test_without_a_checkpoint_every_entry_is_checked(flow: Flow) -> None:
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    for name in SAVED:
        (flow.root / name).unlink()
    found, notes, seqs = _verify(flow)
    assert found == [] and seqs == [1]
    assert notes == ["not incremental (no .promote/checkpoint.json): verifying every entry"]


def test_the_frontier_binds_its_last_entry_at_every_size() -> None:
    """The spine folds the last entry's leaf into the last subtree's root at every size
    (odd sizes: no spine; powers of two: the whole tree), the root is RFC 6962's, and
    a frontier naming another last entry does not bind."""
    from promote.ledger.merkle import root
    from promote.ledger.proofs import TREE, entry_leaf
    from promote.rollback import _EMPTY, _extend, _Frontier

    entries: list[bytes] = []
    prev = b"null"
    for seq in range(1, 34):
        data = b'{"prev":%s,"schema":"promote-ledger-entry/v2","seq":%d,"x":1}' % (prev, seq)
        entries.append(data)
        prev = b'"%s"' % str(hash_bytes(data).digest).encode()
    for size in range(1, 34):
        f = _extend(_EMPTY, iter(entries), size)
        assert f.binds_last() and f.root() == root(TREE, [entry_leaf(e) for e in entries[:size]])
        assert len(f.spine) == (size & -size).bit_length() - 1
        other = _Frontier(f.size, f.stack, b"\x11" * 32, f.spine)
        assert not other.binds_last()
        if f.spine:
            assert not _Frontier(f.size, f.stack, f.last, f.spine[:-1]).binds_last()
        # extended one at a time, from the frontier before: the same frontier
        if size > 1:
            step = _extend(
                _extend(_EMPTY, iter(entries), size - 1), iter(entries[size - 1 :]), size
            )
            assert step == f


@pytest.mark.parametrize("damage", ["resigned", "unlinked", "none"])
def test_the_findings_are_the_same_for_any_job_count(flow: Flow, damage: str) -> None:
    """The chain and the re-justification side by side on two cores, or one after
    the other: the same findings in the same order (a whole chain with an entry that
    does not re-justify, a broken chain, a clean ledger)."""
    for data in (b"1", b"2", b"3"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    for name in SAVED:
        (flow.root / name).unlink()  # nothing moves between the runs
    if damage == "resigned":
        _resign(flow, 3, "checker")
    elif damage == "unlinked":
        _resign(flow, 3, "runner", {"prev": "blake3:" + "0" * 64})
    ws = Workspace.load(flow.root)
    runs = [
        verify_workspace(ws, FileLedger(ws.ledger_dir, ws.store), view=False, jobs=jobs)
        for jobs in (1, 2, 1, 2)
    ]
    assert runs[0] == runs[1] == runs[2] == runs[3]
    # and in ranges of 1 and 2 entries, on 2 and 3 cores
    one = chain_and_justify(ws, FileLedger(ws.ledger_dir, ws.store), ws.store, jobs=1)
    for jobs, every in ((2, 1), (3, 1), (2, 2)):
        ledger = FileLedger(ws.ledger_dir, ws.store)
        assert chain_and_justify(ws, ledger, ws.store, jobs=jobs, every=every) == one
    kinds = [(p.kind, p.location) for p in runs[0]]
    want = {
        "resigned": [("unjustified", "ledger entry 3")],
        "unlinked": [("ledger", "ledger entry 3")],
        "none": [],
    }[damage]
    assert kinds == want, kinds


def test_ranges_carry_the_pins_a_control_entry_moves(flow: Flow) -> None:
    """A trust change in the middle (entry 2: the checker key replaced), releases
    checked by the new key after it, and a last entry that does not re-justify: every
    split of the re-justification into ranges finds what one walk finds, against the
    trust roots each entry had in force."""
    from attest.signers import signer, trust_of

    from promote.attest.keys import new_key, write_key_pair
    from promote.attest.trust import TRUST_PATH, load_trust

    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    checker = new_key()
    write_key_pair(flow.root / "new-checker.pem", checker)
    trust = load_trust((flow.root / TRUST_PATH).read_bytes())
    signers = [s for s in trust.signers if s.id != "demo-checker"]
    (flow.root / TRUST_PATH).write_bytes(
        trust_of(*signers, signer("new-checker", ["checker"], checker)).encode()
    )
    flow.control()
    for data in (b"2", b"3"):
        d = flow.put(data)
        check = flow.check([d], key=str(flow.root / "new-checker.pem"))
        cap = flow.capsule({"release/a.txt": d[0]}, check)
        assert flow.run("promote", cap).returncode == 0
    for name in SAVED:
        (flow.root / name).unlink()
    ws = Workspace.load(flow.root)
    clean = chain_and_justify(ws, FileLedger(ws.ledger_dir, ws.store), ws.store, jobs=1)
    assert clean[0] == [] and clean[3] == []
    second = json.loads((flow.root / ENTRIES / f"{3:012d}.json").read_bytes())
    _resign(flow, 4, "runner", {"decision": second["decision"]})
    one = chain_and_justify(ws, FileLedger(ws.ledger_dir, ws.store), ws.store, jobs=1)
    assert [(p.kind, p.location) for p in one[3]] == [("unjustified", "ledger entry 4")]
    for jobs, every in ((2, 1), (3, 1), (2, 3), (4, 2)):
        ledger = FileLedger(ws.ledger_dir, ws.store)
        assert chain_and_justify(ws, ledger, ws.store, jobs=jobs, every=every) == one
