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
    assert f"evidence: the CHECK report of entry 1 ({check1})" in out
    assert "promoted: ledger entry 3" in out
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}
    # history is never rewritten: a revert is a new entry
    assert [entry_bytes(flow, 1), entry_bytes(flow, 2)] == before
    e3 = entry(flow, 3)
    assert e3["prev"] == digest(before[1])
    assert e3["state_after"] == entry(flow, 1)["state_after"]
    assert e3["check_report"] == entry(flow, 1)["check_report"]
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
    assert plan["revert"]["check_report"]["combined"] is False
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
    assert out["revert"]["check_report"]["digest"] == check1
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
    assert out["revert"]["check_report"]["digest"] == check2
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}


def test_evidence_from_several_entries_is_combined(flow: Flow) -> None:
    check1 = release(flow, {"release/a": b"a1"}, [("unit", "pass"), ("lint", "pass")])
    check2 = release(flow, {"release/b": b"b1"}, [("unit", "pass"), ("fuzz", "skip")])
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    out = json.loads(flow.ok("promote", "revert", "--to", "2", "--json").stdout)
    ev = out["revert"]["check_report"]
    assert ev["combined"] is True
    assert ev["sources"] == [
        {"seq": 1, "digest": check1, "size": ev["sources"][0]["size"]},
        {"seq": 2, "digest": check2, "size": ev["sources"][1]["size"]},
    ]
    combined = stored(flow, ev["digest"])
    assert combined == {
        "schema": "check-report/v1",
        "status": "pass",
        "subjects": sorted(
            [{"digest": digest(b"a1"), "size": 2}, {"digest": digest(b"b1"), "size": 2}],
            key=lambda s: s["digest"],
        ),
        "checks": [{"name": "unit", "status": "pass"}],  # only what passed in both
    }
    assert entry(flow, 4)["check_report"]["digest"] == ev["digest"]
    assert view(flow) == {"release/a": b"a1", "release/b": b"b1"}
    assert flow.run("promote", "ledger", "verify").returncode == 0


def test_one_recorded_report_covering_everything_is_used_as_it_is(flow: Flow) -> None:
    a, b = flow.put(b"a1"), flow.put(b"b1")
    release(flow, {"release/a": b"a1"})
    both = flow.check([a, b])
    cap = flow.capsule({"release/b": b[0]}, both, "--expect-current")
    assert flow.run("promote", cap).returncode == 0
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    out = json.loads(flow.ok("promote", "revert", "--to", "2", "--json").stdout)
    assert out["revert"]["check_report"]["combined"] is False
    assert out["revert"]["check_report"]["digest"] == both


def test_no_common_check_is_denied_by_the_policy(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"}, [("unit", "pass")])
    release(flow, {"release/b": b"b1"}, [("lint", "pass")])
    release(flow, {"release/a": b"a2", "release/b": b"b2"})
    before = flow.snapshot()
    r = flow.run("promote", "revert", "--to", "2")
    assert r.returncode == 4, r.stderr
    assert report(flow)["status"] == "denied"
    assert report(flow)["reasons"] == ["the CHECK report ran no checks"]
    assert flow.snapshot() == before


def test_the_policy_decides_reverts_too(flow: Flow) -> None:
    release(flow, {"release/a": b"a1"})
    release(flow, {"release/a": b"a2"})
    (flow.root / "control/policy/no_revert.rego").write_text(
        'package promote\nimport rego.v1\n\ndeny contains "no reverts on fridays" if {\n'
        '\tinput.capsule.meta.builder == "promote revert"\n}\n'
    )
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
    assert b"the CHECK report of entry 1" in r.stderr


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
        "schema": "promote-capsule/v1",
        "targets": [target],
        "evidence": {"check_report": check},
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
