"""`promote revert --to SEQ` and delete targets, on the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from helpers import Flow


def entry(flow: Flow, seq: int) -> dict:  # type: ignore[type-arg]
    return json.loads((flow.root / f"execution/ledger/entries/{seq:012d}.json").read_bytes())


def entry_bytes(flow: Flow, seq: int) -> bytes:
    return (flow.root / f"execution/ledger/entries/{seq:012d}.json").read_bytes()


def stored(flow: Flow, digest: str) -> dict:  # type: ignore[type-arg]
    return json.loads(flow.ok("cas", "cat", digest).stdout)


def report(flow: Flow) -> dict:  # type: ignore[type-arg]
    return json.loads((flow.root / "execution/promote/report.json").read_bytes())


def digest(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def release(
    flow: Flow, files: dict[str, bytes], checks: list[tuple[str, str]] | None = None
) -> str:
    """Promote `files` with a CHECK report of `checks`; returns the report's digest."""
    refs = {p: flow.put(b) for p, b in files.items()}
    check = flow.check(list(refs.values()), checks=checks)
    cap = flow.capsule({p: d for p, (d, _) in refs.items()}, check, "--expect-current")
    r = flow.run("promote", cap)
    assert r.returncode == 0, r.stderr
    return check


def view(flow: Flow) -> dict[str, bytes]:
    base = flow.root / "release"
    return {
        p.relative_to(flow.root).as_posix(): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def test_revert_restores_the_state_as_a_new_entry(flow: Flow) -> None:
    check1 = release(flow, {"release/a": b"a1", "release/b": b"b1"})
    release(flow, {"release/a": b"a2"})
    before = [entry_bytes(flow, 1), entry_bytes(flow, 2)]
    r = flow.run("promote", "revert", "--to", "1")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith(f"revert to entry 1 {digest(before[0])}: 1 path\n")
    assert "evidence: the 1 attestation of entry 1\n" in out
    assert "promoted: ledger entry 3" in out
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}
    # history is never rewritten: a revert is a new entry
    assert [entry_bytes(flow, 1), entry_bytes(flow, 2)] == before
    e3 = entry(flow, 3)
    assert e3["prev"] == digest(before[1])
    assert e3["state_after"] == entry(flow, 1)["state_after"]
    assert e3["evidence"] == entry(flow, 1)["evidence"]
    assert stored(flow, e3["capsule"]["digest"])["evidence"] == {"attestations": [check1]}
    assert [(c["path"], c["to"]["digest"]) for c in e3["changes"]] == [("release/a", digest(b"a1"))]
    capsule = stored(flow, e3["capsule"]["digest"])
    assert capsule["base"] == digest(before[1])
    assert capsule["targets"] == [
        {"path": "release/a", "digest": digest(b"a1"), "size": 2, "expect": digest(b"a2")}
    ]
    assert capsule["meta"] == {
        "builder": "promote revert",
        "source_revision": f"ledger entry 1 {digest(before[0])}",
    }
    assert report(flow)["status"] == "promoted"
    for cmd in (("verify",), ("ledger", "verify")):
        assert flow.run("promote", *cmd).returncode == 0
    assert "builder=promote revert" in flow.ok("promote", "log", "-n", "1").stdout.decode()
    # and reverting the revert brings entry 2's state back
    assert flow.run("promote", "revert", "--to", "-1").returncode == 0
    assert entry(flow, 4)["state_after"] == entry(flow, 2)["state_after"]


def test_dry_run_shows_it_and_writes_nothing(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    before = flow.snapshot()
    rep = (flow.root / "execution/promote/report.json").read_bytes()
    r = flow.run("promote", "revert", "--to", "1", "--dry-run")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "capsule:\n{" in text and '"builder": "promote revert"' in text
    assert "planned" in text and "ledger entry it would write:" in text
    assert flow.snapshot() == before
    assert (flow.root / "execution/promote/report.json").read_bytes() == rep
    plan = json.loads(flow.ok("promote", "revert", "--to", "1", "--dry-run", "--json").stdout)
    assert plan["status"] == "planned"
    assert plan["revert"]["to"] == 1
    assert len(plan["revert"]["evidence"]["attestations"]) == 1
    assert flow.snapshot() == before
    assert flow.run("promote", "revert", "--to", "1").returncode == 0
    assert entry(flow, 3) == plan["plan"]["entry"]


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_revert_deletes_paths_that_did_not_exist(tmp_path: Path, mode: str) -> None:
    flow = Flow.init(tmp_path / "ws", "--mode", mode)
    check1 = release(flow, {"release/a": b"a1"})
    release(flow, {"release/new/b": b"b1", "release/a": b"a2"})
    r = flow.run("promote", "revert", "--to", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "promoted"
    assert out["revert"]["capsule"]["targets"] == [
        {"path": "release/a", "digest": digest(b"a1"), "size": 2, "expect": digest(b"a2")},
        {"path": "release/new/b", "delete": True, "expect": digest(b"b1")},
    ]
    assert out["revert"]["evidence"]["attestations"] == [check1]
    assert view(flow) == {"release/a": b"a1"}
    changes = entry(flow, 3)["changes"]
    assert changes[1] == {
        "path": "release/new/b",
        "from": {"digest": digest(b"b1"), "size": 2},
        "to": None,
    }
    for cmd in (("verify",), ("ledger", "verify"), ("verify-tree",)):
        assert flow.run("promote", *cmd).returncode == 0, cmd
    assert "release/new/b -> absent" in flow.ok("promote", "log", "-n", "1").stdout.decode()


def test_a_delete_only_revert_names_the_report_of_the_entry_it_returns_to(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    check2 = release(flow, {"release/b": b"b1"})
    release(flow, {"release/c": b"c1"})
    out = json.loads(flow.ok("promote", "revert", "--to", "2", "--json").stdout)
    assert out["revert"]["capsule"]["targets"] == [
        {"path": "release/c", "delete": True, "expect": digest(b"c1")}
    ]
    assert out["revert"]["evidence"]["attestations"] == [check2]
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}


def test_evidence_from_several_entries_is_named_together(flow: Flow) -> None:
    check1 = release(flow, {"release/a": b"a1"}, [("unit", "pass"), ("lint", "pass")])
    check2 = release(flow, {"release/b": b"b1"}, [("fuzz", "pass")])
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    out = json.loads(flow.ok("promote", "revert", "--to", "2", "--json").stdout)
    ev = out["revert"]["evidence"]
    # signatures cannot be combined: each recorded attestation is named as it is
    assert ev["attestations"] == [check1, check2]
    assert [s["seq"] for s in ev["sources"]] == [1, 2]
    assert [s["capsule"] for s in ev["sources"]] == [
        entry(flow, 1)["capsule"],
        entry(flow, 2)["capsule"],
    ]
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}
    assert flow.run("promote", "ledger", "verify").returncode == 0


def test_a_failing_check_denies_and_a_revert_names_only_what_was_allowed(flow: Flow) -> None:
    a, b = flow.put(b"a1"), flow.put(b"b1")
    release(flow, {"release/a": b"a1"})
    failing = flow.check([a, b], status="fail")  # recorded beside a passing one
    passing = flow.check([b])
    cap = flow.root / "two.json"
    flow.ok(
        "promote", "capsule", "new", "--target", f"release/b={b[0]}", "--attestation", passing,
        "--attestation", failing, "--expect-current", "-o", cap,
    )  # fmt: skip
    assert flow.run("promote", cap).returncode == 4  # a failing CHECK denies, whoever passed
    assert flow.release({"release/b": b"b1"}).returncode == 0
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    out = json.loads(flow.ok("promote", "revert", "--to", "2", "--json").stdout)
    assert failing not in out["revert"]["evidence"]["attestations"]
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}


def test_the_policy_decides_reverts_too(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    (flow.root / "control/policy/no_revert.rego").write_text(
        'package promote\nimport rego.v1\n\ndeny contains "no reverts on fridays" if {\n'
        '\tinput.capsule.meta.builder == "promote revert"\n}\n'
    )
    flow.control()
    r = flow.run("promote", "revert", "--to", "1")
    assert r.returncode == 4
    assert report(flow)["reasons"] == ["no reverts on fridays"]
    assert (flow.root / "release/a").read_bytes() == b"a2"


def test_a_stale_revert_capsule_is_a_conflict(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    plan = json.loads(flow.ok("promote", "revert", "--to", "1", "--dry-run", "--json").stdout)
    (flow.root / "revert.json").write_text(json.dumps(plan["revert"]["capsule"]))
    release(flow, {"release/a": b"a3"})
    r = flow.run("promote", "revert.json")
    assert r.returncode == 5
    assert b"stale capsule" in r.stderr
    # without the base guard, the per-path expect still refuses it
    doc = plan["revert"]["capsule"]
    del doc["base"]
    (flow.root / "revert.json").write_text(json.dumps(doc))
    r = flow.run("promote", "revert.json")
    assert r.returncode == 5
    assert f"release/a expected {digest(b'a2')}".encode() in r.stderr


@pytest.mark.parametrize(
    ("to", "message"),
    [
        ("0", b"would delete every path"),
        ("2", b"is the head: nothing to revert"),
        ("9", b"no ledger entry 9"),
        ("one", b"want an entry number"),
    ],
)
def test_revert_usage_errors(flow: Flow, to: str, message: bytes) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    r = flow.run("promote", "revert", "--to", to)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stderr.count(b"\n") == 1


def test_nothing_to_revert(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    release(flow, {"release/a": b"a1"})
    r = flow.run("promote", "revert", "--to", "1")
    assert r.returncode == 2
    assert b"nothing to revert" in r.stderr


def test_a_recorded_report_gone_from_the_store(flow: Flow) -> None:
    check1 = release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    (flow.root / ".cas/objects/blake3" / check1[7:9] / check1[9:]).unlink()
    r = flow.run("promote", "revert", "--to", "1")
    assert r.returncode == 3
    assert r.stderr == f"promote: error: attestation {check1} is not in the store\n".encode()


def test_revert_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    flow = Flow.init(tmp_path / "ws", env={"PROMOTE_LEDGER": pg_url})
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    assert flow.run("promote", "revert", "--to", "1").returncode == 0
    assert view(flow) == {"release/a": b"a1"}
    assert flow.run("promote", "ledger", "verify").returncode == 0


# -- delete targets in hand-written capsules -----------------------------------------


def delete_capsule(flow: Flow, target: dict, check: str) -> Path:  # type: ignore[type-arg]
    doc = {
        "schema": "promote-capsule/v2",
        "targets": [target],
        "evidence": {"attestations": [check]},
    }
    path = flow.root / "delete.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_delete_target(flow: Flow) -> None:
    check = release(flow, {"release/a": b"a1", "release/b": b"b1"})
    r = flow.run("promote", delete_capsule(flow, {"path": "release/b", "delete": True}, check))
    assert r.returncode == 0, r.stderr
    assert view(flow) == {"release/a": b"a1"}
    r = flow.run("promote", delete_capsule(flow, {"path": "release/b", "delete": True}, check))
    assert r.returncode == 5
    assert b"is to be deleted, but it is absent" in r.stderr


@pytest.mark.parametrize(
    "target",
    [
        {"path": "release/a", "delete": True, "digest": "blake3:" + "0" * 64},
        {"path": "release/a", "delete": True, "size": 1},
        {"path": "release/a", "delete": False},
        {"path": "release/a"},
    ],
    ids=["with-digest", "with-size", "delete-false", "neither"],
)
def test_malformed_delete_targets(flow: Flow, target: dict) -> None:  # type: ignore[type-arg]
    check = release(flow, {"release/a": b"a1"})
    r = flow.run("promote", delete_capsule(flow, target, check))
    assert r.returncode == 2, r.stderr
    assert b"schema" in r.stderr and b"Traceback" not in r.stderr


def test_a_delete_outside_the_allow_list_is_denied(flow: Flow) -> None:
    check = release(flow, {"release/a": b"a1"})
    r = flow.run("promote", delete_capsule(flow, {"path": "src/a", "delete": True}, check))
    assert r.returncode == 4
