"""Re-justification and rollback (ADR 10), on the real CLI: an attacker who can write
the ledger directory, HEAD, the store and the view, and in some tests holds the
runner key too."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from helpers import Flow

from cas.digest import Digest, ObjectRef, hash_bytes
from promote.attest.keys import key_id, load_private_key
from promote.ledger.entry import UnsignedEntry, sign_entry
from promote.pins import workspace_trust
from promote.policy.engines import PolicyBundle
from promote.vsa import build_vsa, sha256_hex, sign_vsa, vsa_subjects
from promote.workspace import Workspace

ENTRIES = "execution/ledger/entries"


def _path(root: Path, n: int) -> Path:
    return root / ENTRIES / f"{n:012d}.json"


def _doc(root: Path, n: int) -> dict[str, Any]:
    return dict(json.loads(_path(root, n).read_bytes()))


def _obj(root: Path, ref: dict[str, Any]) -> Any:
    return json.loads(Workspace.load(root).store.read_bytes(Digest.parse(ref["digest"])))


def _write(root: Path, doc: dict[str, Any], key: str | None) -> None:
    """Write entry `doc` (re-signed with the demo `key` when given) and fix HEAD."""
    if key is not None:
        body = {k: v for k, v in doc.items() if k != "signature"}
        signer = load_private_key(root / f".promote/keys/{key}.pem")
        data = sign_entry(UnsignedEntry(body), signer).data
    else:
        data = rfc8785.dumps(doc)
    p = _path(root, doc["seq"])
    if p.exists():
        os.chmod(p, 0o644)
    p.write_bytes(data)
    head = {"seq": doc["seq"], "entry": str(hash_bytes(data).digest), "state": doc["state_after"]}
    (root / "execution/ledger/HEAD").write_bytes(rfc8785.dumps(head))


def _problems(flow: Flow, *args: str) -> tuple[int, list[tuple[str, str, str]]]:
    r = flow.run("promote", *args, "--json")
    found = json.loads(r.stdout)["problems"]
    return r.returncode, [(p["kind"], p["location"], p["detail"]) for p in found]


def _forge(flow: Flow, key: str | None) -> None:
    """Issue 11, "What was seen" 2: entry 2 whose decision is a deny, whose CHECK says
    fail, and whose change is in no capsule (it reuses entry 1's), with HEAD fixed."""
    root = flow.root
    store = Workspace.load(root).store
    prev = _doc(root, 1)
    evil = flow.put(b"evil")
    failing = flow.check([evil], status="fail", checks=[("unit", "fail")])
    decision = _obj(root, prev["decision"])
    decision.update(allow=False, deny=["the CHECK report failed"])
    deny = store.put_bytes(rfc8785.dumps(decision))
    state = _obj(root, prev["state_after"])
    state["pointers"]["release/evil.txt"] = {"digest": evil[0], "size": evil[1]}
    after = store.put_bytes(rfc8785.dumps(state))
    doc = dict(prev)
    doc.update(
        seq=2,
        prev=str(hash_bytes(_path(root, 1).read_bytes()).digest),
        evidence=[{"digest": failing, "size": store.size(Digest.parse(failing))}],
        decision=deny.to_dict(),
        state_before=prev["state_after"],
        state_after=after.to_dict(),
        changes=[
            {"path": "release/evil.txt", "from": None, "to": {"digest": evil[0], "size": evil[1]}}
        ],
    )
    if key is not None:  # the holder of the runner key signs a VSA for it too
        doc["vsa"] = _vsa(root, doc, key).to_dict()
    _write(root, doc, key)


def _vsa(root: Path, doc: dict[str, Any], key: str) -> ObjectRef:
    """A VSA for entry `doc`, as the gate makes one, signed with the demo `key`."""
    store = Workspace.load(root).store
    signer = load_private_key(root / f".promote/keys/{key}.pem")
    trust = workspace_trust(Workspace.load(root))
    statement = build_vsa(
        seq=doc["seq"],
        runner=trust.signer_of(key_id(signer.public_key())).id,
        subjects=vsa_subjects(doc),
        policy=ObjectRef.from_dict(doc["policy"]),
        evidence=[ObjectRef.from_dict(r) for r in doc["evidence"]],
        sha256=lambda r: sha256_hex(store.read_bytes(r.digest)),
    )
    return store.put_bytes(sign_vsa(statement, signer).encode())


def test_a_promoted_ledger_re_justifies_and_the_checkpoint_grows(flow: Flow) -> None:
    assert flow.release({"release/a.txt": b"a1"}).returncode == 0
    assert flow.release({"release/a.txt": b"a2"}).returncode == 0
    assert _problems(flow, "ledger", "verify", "--replay") == (0, [])
    cp = json.loads((flow.root / ".promote/checkpoint.json").read_bytes())
    assert cp["size"] == 2 and cp["schema"] == "promote-checkpoint/v1"
    assert flow.release({"release/b.txt": b"b"}).returncode == 0
    assert _problems(flow, "verify") == (0, [])
    assert json.loads((flow.root / ".promote/checkpoint.json").read_bytes())["size"] == 3


@pytest.mark.parametrize("key", [None, "runner"], ids=["no-key", "stolen-runner-key"])
def test_the_hand_forged_entry_is_found_and_not_materialized(
    copy_flow: Flow, key: str | None
) -> None:
    flow = copy_flow
    assert flow.release({"release/a.txt": b"a1"}).returncode == 0
    _forge(flow, key)
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3
    assert [(k, w) for k, w, _ in found] == [("unjustified", "ledger entry 2")]
    why = found[0][2]
    assert ("signature" in why) if key is None else ("changes are not exactly" in why), why
    code, found = _problems(flow, "verify-tree")
    assert code == 3 and ("unjustified", "ledger entry 2") in [(k, w) for k, w, _ in found]
    code, found = _problems(flow, "ledger", "verify-chain", "--store", str(flow.root / ".cas"))
    assert code == 3 and [(k, w) for k, w, _ in found] == [("unjustified", "ledger entry 2")]
    r = flow.run("cas", "fsck", "--json")
    assert r.returncode == 3
    fsck = [(p["kind"], p["location"]) for p in json.loads(r.stdout)["problems"]]
    assert ("unjustified", "ledger entry 2") in fsck, fsck
    r = flow.run("promote", "recover")
    assert r.returncode == 3, r.stderr
    assert r.stderr.decode().count("\n") == 1 and b"ledger entry 2" in r.stderr
    assert not (flow.root / "release/evil.txt").exists()  # the forged state never shown


def test_verify_tree_without_a_store_checks_the_signatures(copy_flow: Flow) -> None:
    flow = copy_flow
    assert flow.release({"release/a.txt": b"a1"}).returncode == 0
    _forge(flow, None)
    store = flow.root / ".cas"
    os.rename(store, flow.root / ".cas-away")
    code, found = _problems(flow, "verify-tree")
    assert code == 3 and [(k, w) for k, w, _ in found] == [
        ("unjustified", "ledger entry 2"),  # no runner signed it
        ("view-missing", "release/evil.txt"),  # and the tree does not hold the forged state
    ]
    assert "signature" in found[0][2], found


def test_an_entry_re_signed_with_a_non_runner_key_is_refused(flow: Flow) -> None:
    assert flow.release({"release/a.txt": b"a1"}).returncode == 0
    assert flow.release({"release/a.txt": b"a2"}).returncode == 0
    _write(flow.root, _doc(flow.root, 2), "checker")
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3
    # the promotions moved the checkpoint to entry 2: its bytes changed, so did the root
    assert [(k, w) for k, w, _ in found] == [
        ("rollback", ".promote/checkpoint.json"),
        ("unjustified", "ledger entry 2"),
    ]
    assert "'demo-checker', which is not a runner" in found[1][2]
    (flow.root / ".promote/checkpoint.json").unlink()  # the attacker removes it too
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3 and [(k, w) for k, w, _ in found] == [("unjustified", "ledger entry 2")]


def test_truncation_after_a_checkpoint_is_found(flow: Flow) -> None:
    for data in (b"1", b"2", b"3"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    outside = flow.root.parent / "kept-elsewhere.json"
    outside.write_bytes(flow.ok("promote", "ledger", "checkpoint", "--json").stdout)
    assert _problems(flow, "ledger", "verify") == (0, [])  # moves .promote/checkpoint.json
    _path(flow.root, 3).unlink()
    _write(flow.root, _doc(flow.root, 2), None)  # HEAD fixed to match: a consistent chain
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3 and [(k, w) for k, w, _ in found] == [("rollback", ".promote/checkpoint.json")]
    assert "fewer than the 3" in found[0][2]
    (flow.root / ".promote/checkpoint.json").unlink()  # the attacker removes it too
    assert _problems(flow, "ledger", "verify")[0] == 0
    code, found = _problems(flow, "ledger", "verify", "--checkpoint", str(outside))
    assert code == 3 and [(k, w) for k, w, _ in found] == [("rollback", str(outside))]


def test_a_rewritten_chain_is_found_by_the_checkpoint(flow: Flow) -> None:
    """The tail dropped, then a new, genuine promotion on top: the chain is whole, every
    entry re-justifies, the size is back, but it is not the history the checkpoint saw."""
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    assert flow.release({"release/a.txt": b"2"}).returncode == 0
    assert _problems(flow, "ledger", "verify") == (0, [])
    _path(flow.root, 2).unlink()
    _write(flow.root, _doc(flow.root, 1), None)
    (flow.root / ".promote/checkpoint.json").rename(flow.root / "saved.json")
    assert flow.run("promote", "recover").returncode == 0
    assert flow.release({"release/a.txt": b"other"}).returncode == 0
    (flow.root / "saved.json").rename(flow.root / ".promote/checkpoint.json")
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3 and [(k, w) for k, w, _ in found] == [("rollback", ".promote/checkpoint.json")]
    assert "rewritten" in found[0][2]


def test_replay_catches_a_decision_the_recorded_policy_would_not_give(flow: Flow) -> None:
    """A runner-key holder pins a deny-all policy on entry 1 but records an allow."""
    assert flow.release({"release/a.txt": b"a1"}).returncode == 0
    root = flow.root
    store = Workspace.load(root).store
    doc = _doc(root, 1)
    decision = _obj(root, doc["decision"])
    bundle = PolicyBundle({"promote.rego": "package promote\n\nallow := false\n"}, "promote")
    policy = store.put_bytes(bundle.encode())
    decision["policy"] = policy.to_dict()
    doc["decision"] = store.put_bytes(rfc8785.dumps(decision)).to_dict()
    doc["policy"] = policy.to_dict()
    _write(root, doc, "runner")
    code, found = _problems(flow, "ledger", "verify")  # the promotion's checkpoint saw entry 1
    assert code == 3 and [(k, w) for k, w, _ in found] == [("rollback", ".promote/checkpoint.json")]
    (root / ".promote/checkpoint.json").unlink()  # the attacker removes it too
    assert _problems(flow, "ledger", "verify") == (0, [])
    code, found = _problems(flow, "ledger", "verify", "--replay")
    assert code == 3 and found[0][:2] == ("unjustified", "ledger entry 1")
    assert "--replay" in found[0][2] and "allow=false" in found[0][2]


def test_the_gate_moves_the_checkpoint_to_each_entry_it_commits(flow: Flow) -> None:
    """Each promotion moves .promote/checkpoint.json to its entry, reading only the
    entries since (the frontier): the root is the ledger's own, as a full rebuild gives."""
    cp = flow.root / ".promote/checkpoint.json"
    for n, data in enumerate((b"1", b"2", b"3", b"4", b"5"), start=1):
        assert flow.release({"release/a.txt": data}).returncode == 0
        held = json.loads(cp.read_bytes())
        full = json.loads(flow.ok("promote", "ledger", "checkpoint", "--json").stdout)
        assert (held["size"], held["root"]) == (n, full["root"])
    # a frontier that does not reproduce the checkpoint is not believed: the full path
    frontier = flow.root / ".promote/checkpoint-frontier.json"
    doc = json.loads(frontier.read_bytes())
    doc["stack"] = ["00" * 32] * len(doc["stack"])
    frontier.write_bytes(rfc8785.dumps(doc))
    assert flow.release({"release/a.txt": b"6"}).returncode == 0
    full = json.loads(flow.ok("promote", "ledger", "checkpoint", "--json").stdout)
    assert json.loads(cp.read_bytes())["root"] == full["root"]
    assert json.loads(frontier.read_bytes())["stack"] != doc["stack"]


def _ledger_bytes(root: Path) -> dict[str, bytes]:
    top = root / "execution/ledger"
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def test_a_promotion_on_a_truncated_ledger_is_refused_before_the_commit(flow: Flow) -> None:
    """The tail dropped after a checkpoint, HEAD fixed to match: the gate refuses before
    it commits (exit 3, one line naming the checkpoint), the ledger's bytes unchanged,
    the report failed; a dry run reports the same; the checkpoint is kept."""
    for data in (b"1", b"2", b"3"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    assert _problems(flow, "ledger", "verify") == (0, [])
    cp = flow.root / ".promote/checkpoint.json"
    before = cp.read_bytes()
    _path(flow.root, 3).unlink()
    _write(flow.root, _doc(flow.root, 2), None)  # HEAD fixed to match: a consistent chain
    ledger = _ledger_bytes(flow.root)
    refs = {"release/a.txt": flow.put(b"other")}
    cap = flow.capsule({p: d for p, (d, _) in refs.items()}, flow.check(list(refs.values())))
    dry = flow.run("promote", "--dry-run", cap)
    assert dry.returncode == 3, dry.stderr
    r = flow.run("promote", cap)
    assert r.returncode == 3, r.stderr
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and ".promote/checkpoint.json" in lines[0], lines
    assert "fewer than the 3" in lines[0]
    assert not _path(flow.root, 3).exists()
    assert _ledger_bytes(flow.root) == ledger
    report = json.loads((flow.root / "execution/promote/report.json").read_bytes())
    assert report["status"] == "failed" and report["ledger"] is None
    assert any(".promote/checkpoint.json" in why for why in report["reasons"])
    assert cp.read_bytes() == before
    code, found = _problems(flow, "ledger", "verify")
    assert code == 3 and [(k, w) for k, w, _ in found] == [("rollback", ".promote/checkpoint.json")]


def test_a_promotion_on_a_rewritten_ledger_is_refused_before_the_commit(flow: Flow) -> None:
    """The tail dropped and a genuine entry put in its place (the size is back, the
    frontier's last entry is not): the full consistency proof refuses it, nothing committed."""
    assert flow.release({"release/a.txt": b"1"}).returncode == 0
    assert flow.release({"release/a.txt": b"2"}).returncode == 0
    _path(flow.root, 2).unlink()
    _write(flow.root, _doc(flow.root, 1), None)
    saved = flow.root / "saved"
    saved.mkdir()
    for name in ("checkpoint.json", "checkpoint-frontier.json"):
        (flow.root / ".promote" / name).rename(saved / name)
    assert flow.run("promote", "recover").returncode == 0
    assert flow.release({"release/a.txt": b"other"}).returncode == 0
    for name in ("checkpoint.json", "checkpoint-frontier.json"):
        (saved / name).replace(flow.root / ".promote" / name)
    ledger = _ledger_bytes(flow.root)
    r = flow.release({"release/a.txt": b"third"})
    assert r.returncode == 3, r.stderr
    assert ".promote/checkpoint.json" in r.stderr.decode() and "rewritten" in r.stderr.decode()
    assert _ledger_bytes(flow.root) == ledger
