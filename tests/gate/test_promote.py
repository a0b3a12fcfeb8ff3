"""The promotion gate end to end: real files, real store, the real embedded engine."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers import Flow


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow.init(tmp_path / "ws")


def report(flow: Flow) -> dict:
    return json.loads((flow.root / "execution/promote/report.json").read_bytes())


def test_accept_with_complete_evidence(flow: Flow) -> None:
    r = flow.release({"release/app.whl": b"wheel bytes"})
    assert r.returncode == 0, r.stderr
    assert (flow.root / "release/app.whl").read_bytes() == b"wheel bytes"
    rep = report(flow)
    assert rep["status"] == "promoted"
    assert rep["ledger"]["seq"] == 1
    assert rep["decision"]["allow"] is True
    assert [c["path"] for c in rep["changes"]] == ["release/app.whl"]
    assert flow.run("promote", "verify").returncode == 0
    assert flow.run("promote", "ledger", "verify").returncode == 0
    assert flow.run("cas", "fsck").returncode == 0


def test_second_promotion_switches_all_paths_together(flow: Flow) -> None:
    assert flow.release({"release/a": b"a1", "release/b": b"b1"}).returncode == 0
    r = flow.release(
        {"release/a": b"a2", "release/sub/c": b"c2"}, "--expect-current", "--base", "current"
    )
    assert r.returncode == 0, r.stderr
    assert (flow.root / "release/a").read_bytes() == b"a2"
    assert (flow.root / "release/b").read_bytes() == b"b1"
    assert (flow.root / "release/sub/c").read_bytes() == b"c2"
    entry2 = json.loads((flow.root / "execution/ledger/entries/000000000002.json").read_bytes())
    entry1_bytes = (flow.root / "execution/ledger/entries/000000000001.json").read_bytes()
    import blake3

    assert entry2["prev"] == "blake3:" + blake3.blake3(entry1_bytes).hexdigest()
    assert entry2["state_before"] == json.loads(entry1_bytes)["state_after"]
    assert flow.run("promote", "verify").returncode == 0


def test_promote_by_capsule_digest(flow: Flow) -> None:
    d, s = flow.put(b"x")
    cap = flow.capsule({"release/x": d}, flow.check([(d, s)]))
    cap_digest = flow.put(cap.read_bytes())[0]
    r = flow.run("promote", cap_digest)
    assert r.returncode == 0, r.stderr
    assert report(flow)["capsule"] == cap_digest


# -- denials and failures leave everything as it was ---------------------------


def assert_unchanged(flow: Flow, before: dict[str, bytes]) -> None:
    assert flow.snapshot() == before
    assert flow.run("promote", "verify").returncode == 0


def test_deny_when_policy_denies(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    (flow.root / "control/policy/extra.rego").write_text(
        'package promote\nimport rego.v1\n\ndeny contains "builder must be ci" if {\n'
        '\tinput.capsule.meta.builder != "ci"\n}\n'
    )
    flow.control()  # the ledger pins the policy: an edit is a control promotion
    before = flow.snapshot()
    r = flow.release({"release/b": b"2"}, "--builder", "laptop")
    assert r.returncode == 4, r.stderr
    rep = report(flow)
    assert rep["status"] == "denied"
    assert rep["reasons"] == ["builder must be ci"]
    assert rep["decision"]["deny"] == ["builder must be ci"]
    assert rep["ledger"] is None
    assert_unchanged(flow, before)
    assert flow.release({"release/b": b"2"}, "--builder", "ci").returncode == 0


@pytest.mark.parametrize(
    "policy",
    [
        "package promote\nimport rego.v1\nallow if {\n",  # syntax error
        "package promote\nimport rego.v1\nother := true\n",  # allow undefined
        "package elsewhere\nimport rego.v1\nallow := true\n",  # package undefined
        'package promote\nimport rego.v1\nallow := "yes"\n',  # allow not a boolean
        "package promote\nimport rego.v1\nallow := true\ndeny := 7\n",  # deny of the wrong type
        'package promote\nimport rego.v1\nallow := true\nx := 1 / 0\ndeny contains "boom" if { x > 0 }\n',  # runtime error
        "",  # empty file
    ],
    ids=[
        "syntax",
        "undefined",
        "wrong-package",
        "allow-not-bool",
        "deny-not-set",
        "runtime-error",
        "empty",
    ],
)
def test_fail_closed_on_broken_policy(flow: Flow, policy: str) -> None:
    for f in (flow.root / "control/policy").glob("*.rego"):
        f.unlink()
    (flow.root / "control/policy/promote.rego").write_text(policy)
    before = flow.snapshot()
    r = flow.release({"release/a": b"1"})
    assert r.returncode == 4, r.stderr
    rep = report(flow)
    assert rep["status"] == "denied"
    assert rep["decision"]["allow"] is False
    assert rep["reasons"]
    assert_unchanged(flow, before)


def test_fail_closed_on_missing_policy(flow: Flow) -> None:
    for f in (flow.root / "control/policy").glob("*.rego"):
        f.unlink()
    r = flow.release({"release/a": b"1"})
    assert r.returncode == 4
    assert "no policy files" in report(flow)["reasons"][0]


def test_absent_target_digest(flow: Flow) -> None:
    d, s = flow.put(b"real")
    check = flow.check([(d, s), ("blake3:" + "ab" * 32, 4)])
    doc = {
        "schema": "promote-capsule/v2",
        "targets": [{"path": "release/a", "digest": "blake3:" + "ab" * 32, "size": 4}],
        "evidence": {"attestations": [check]},
    }
    (flow.root / "c.json").write_text(json.dumps(doc))
    before = flow.snapshot()
    r = flow.run("promote", "c.json")
    assert r.returncode == 3
    assert b"not in the store" in r.stderr
    assert report(flow)["status"] == "failed"
    assert_unchanged(flow, before)


def test_corrupted_target_object(flow: Flow) -> None:
    d, s = flow.put(b"good bytes")
    cap = flow.capsule({"release/a": d}, flow.check([(d, s)]))
    obj = flow.root / ".cas/objects/blake3" / d[7:9] / d[9:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"evil bytes")
    before = flow.snapshot()
    r = flow.run("promote", cap)
    assert r.returncode == 3
    assert b"corrupt" in r.stderr
    assert_unchanged(flow, before)


UNCOVERED = "is not covered by a passing CHECK signed by the checker role"


def test_check_report_not_covering_a_target(flow: Flow) -> None:
    a, sa = flow.put(b"a")
    b, _ = flow.put(b"b")
    cap = flow.capsule({"release/a": a, "release/b": b}, flow.check([(a, sa)]))
    before = flow.snapshot()
    r = flow.run("promote", cap)
    assert r.returncode == 4
    assert r.stderr == f"promote: denied: target release/b ({b}) {UNCOVERED}\n".encode()
    assert_unchanged(flow, before)


def test_check_report_covering_other_artifact_of_same_size(flow: Flow) -> None:
    a, sa = flow.put(b"aaaa")
    b, sb = flow.put(b"bbbb")
    assert sa == sb
    cap = flow.capsule({"release/a": a}, flow.check([(b, sb)]))
    r = flow.run("promote", cap)
    assert r.returncode == 4
    assert UNCOVERED.encode() in r.stderr


def test_check_report_status_fail(flow: Flow) -> None:
    a, sa = flow.put(b"a")
    check = flow.check([(a, sa)], status="fail")
    cap = flow.capsule({"release/a": a}, check)
    r = flow.run("promote", cap)
    assert r.returncode == 4
    assert report(flow)["reasons"] == [
        f"target release/a ({a}) {UNCOVERED}",
        f"the CHECK report {check} has status fail, not pass",
    ]


def test_check_report_invalid_or_missing(flow: Flow) -> None:
    a, size = flow.put(b"a")
    bogus = flow.put(b'{"schema": "check-report/v1", "status": "pass"}')[0]
    refused = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={a}", "--check-report", bogus,
        "-o", "c.json",
    )  # fmt: skip
    assert refused.returncode == 2 and b"schema" in refused.stderr
    # a v1 capsule naming it by hand (capsule new refuses it): exit 3, as before
    doc = {
        "schema": "promote-capsule/v1",
        "targets": [{"path": "release/a", "digest": a, "size": size}],
        "evidence": {"check_report": bogus},
    }
    (flow.root / "c.json").write_text(json.dumps(doc))
    r = flow.run("promote", "c.json")
    assert r.returncode == 3
    assert b"schema" in r.stderr
    # v2: an attestation that is no envelope is malformed (2); one not in the store, 3
    refused = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={a}", "--attestation", bogus,
        "-o", "c.json",
    )  # fmt: skip
    assert refused.returncode == 2 and b"DSSE envelope" in refused.stderr
    cap = flow.capsule({"release/a": a}, flow.check([(a, size)]))
    doc = json.loads(cap.read_bytes())
    doc["evidence"]["attestations"] = [bogus]
    cap.write_text(json.dumps(doc))
    r = flow.run("promote", cap)
    assert r.returncode == 2
    assert r.stderr.startswith(f"promote: error: attestation {bogus}: DSSE envelope".encode())
    missing = "blake3:" + "cd" * 32
    doc["evidence"]["attestations"] = [missing]
    cap.write_text(json.dumps(doc))
    r = flow.run("promote", cap)
    assert r.returncode == 3
    assert r.stderr == f"promote: error: attestation {missing} is not in the store\n".encode()


# -- path hygiene ----------------------------------------------------------------

BAD_PATHS = {
    "absolute": ("/release/a", 2),
    "dotdot": ("release/../etc/passwd", 2),
    "dot": ("release/./a", 2),
    "empty-segment": ("release//a", 2),
    "trailing-slash": ("release/a/", 2),
    "nul": ("release/a\x00b", 2),
    "control": ("release/a\nb", 2),
    "backslash": ("release\\a", 2),
    "not-nfc": ("release/e\u0301", 2),
    "outside-allow-list": ("src/a", 4),
    "prefix-lookalike": ("releases/a", 4),
}


def raw_capsule(flow: Flow, paths: list[str]) -> Path:
    d, s = flow.put(b"payload")
    check = flow.check([(d, s)])
    doc = {
        "schema": "promote-capsule/v2",
        "targets": [{"path": p, "digest": d, "size": s} for p in paths],
        "evidence": {"attestations": [check]},
    }
    path = flow.root / "raw.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("case", list(BAD_PATHS), ids=list(BAD_PATHS))
def test_path_hygiene(flow: Flow, case: str) -> None:
    path, code = BAD_PATHS[case]
    before = flow.snapshot()
    r = flow.run("promote", raw_capsule(flow, [path]))
    assert r.returncode == code, r.stderr
    assert r.stderr.count(b"\n") <= 2 and b"Traceback" not in r.stderr
    assert_unchanged(flow, before)


@pytest.mark.parametrize(
    "paths",
    [
        ["release/App.whl", "release/app.whl"],
        ["release/\u00c5", "release/\u212b"],  # A-ring vs angstrom sign
        ["release/ﬁle", "release/file"],  # ligature folds under NFKC
        ["release/a", "release/a/b"],
        ["release/a", "release/a"],
    ],
    ids=["case", "unicode", "nfkc", "file-dir", "duplicate"],
)
def test_collisions(flow: Flow, paths: list[str]) -> None:
    r = flow.run("promote", raw_capsule(flow, paths))
    assert r.returncode == 2, r.stderr


def test_collision_with_existing_path(flow: Flow) -> None:
    assert flow.release({"release/lib": b"1"}).returncode == 0
    assert flow.run("promote", raw_capsule(flow, ["release/lib/x"])).returncode == 2
    assert flow.run("promote", raw_capsule(flow, ["release/LIB"])).returncode == 2


# -- compare-and-swap ------------------------------------------------------------


def test_stale_expected_digest_is_conflict(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    d, s = flow.put(b"2")
    cap = flow.capsule({"release/a": d}, flow.check([(d, s)]), "--expect-current", name="old.json")
    assert flow.release({"release/a": b"3"}).returncode == 0
    before = flow.snapshot()
    r = flow.run("promote", cap)
    assert r.returncode == 5
    assert b"stale capsule" in r.stderr
    assert_unchanged(flow, before)


def test_expect_absent(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    d, s = flow.put(b"2")
    cap = flow.capsule({"release/a": d}, flow.check([(d, s)]), "--expect", "release/a=absent")
    assert flow.run("promote", cap).returncode == 5


def test_stale_base_is_conflict(flow: Flow) -> None:
    d, s = flow.put(b"1")
    cap = flow.capsule({"release/a": d}, flow.check([(d, s)]), "--base", "current", name="old.json")
    assert flow.release({"release/b": b"2"}).returncode == 0
    r = flow.run("promote", cap)
    assert r.returncode == 5
    assert b"expects ledger head" in r.stderr


def test_replayed_capsule_is_refused(flow: Flow) -> None:
    d, s = flow.put(b"1")
    cap = flow.capsule(
        {"release/a": d}, flow.check([(d, s)]), "--expect-current", "--base", "current"
    )
    assert flow.run("promote", cap).returncode == 0
    assert flow.run("promote", cap).returncode == 5


# -- invalid capsules --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"schema": "promote-capsule/v1"}',
        b'{"schema": "promote-capsule/v1", "targets": [], "evidence": {"check_report": "blake3:'
        + b"0" * 64
        + b'"}}',
        b'{"schema": "promote-capsule/v2", "targets": [], "evidence": {}}',
        b'{"schema": "promote-capsule/v1", "schema": "promote-capsule/v1"}',
        b"[" * 10000,
    ],
    ids=[
        "not-json",
        "not-utf8",
        "array",
        "missing-fields",
        "no-targets",
        "wrong-version",
        "duplicate-keys",
        "deep",
    ],
)
def test_invalid_capsule(flow: Flow, data: bytes) -> None:
    (flow.root / "bad.json").write_bytes(data)
    r = flow.run("promote", "bad.json")
    assert r.returncode == 2, r.stderr
    assert b"Traceback" not in r.stderr
    assert report(flow)["status"] == "failed"


def test_unknown_fields_refused(flow: Flow) -> None:
    d, s = flow.put(b"x")
    cap = flow.capsule({"release/x": d}, flow.check([(d, s)]))
    doc = json.loads(cap.read_bytes())
    doc["targets"][0]["mode"] = "0755"
    cap.write_text(json.dumps(doc))
    r = flow.run("promote", cap)
    assert r.returncode == 2
    assert b"mode" in r.stderr


def test_missing_capsule_file(flow: Flow) -> None:
    r = flow.run("promote", "nope.json")
    assert r.returncode == 2
    assert b"no such capsule file" in r.stderr


def test_outside_a_workspace(tmp_path: Path) -> None:
    from helpers import run_cli

    r = run_cli("promote", "verify", cwd=tmp_path)
    assert r.returncode == 2
    assert b"promote init" in r.stderr


# -- dry run, determinism, replay ----------------------------------------------------


def test_dry_run_writes_nothing_and_shows_the_entry(flow: Flow) -> None:
    d, s = flow.put(b"x")
    cap = flow.capsule({"release/x": d}, flow.check([(d, s)]))
    before = flow.snapshot()
    objects = sorted(p.name for p in (flow.root / ".cas/objects").rglob("*"))
    r = flow.run("promote", "--dry-run", "--json", cap)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["status"] == "planned"
    assert flow.snapshot() == before
    assert sorted(p.name for p in (flow.root / ".cas/objects").rglob("*")) == objects
    assert not (flow.root / "execution/promote/report.json").exists()
    assert flow.run("promote", cap).returncode == 0
    written = (flow.root / "execution/ledger/entries/000000000001.json").read_bytes()
    assert json.loads(written) == plan["plan"]["entry"]


def test_same_inputs_give_identical_bytes(tmp_path: Path) -> None:
    outputs = []
    first: Flow | None = None
    for name in ("one", "two"):
        flow = Flow.init(tmp_path / name, keys_from=first)  # the same keys: the same inputs
        first = first or flow
        assert (
            flow.release({"release/a": b"1", "release/b": b"2"}, "--builder", "ci").returncode == 0
        )
        assert (
            flow.release({"release/a": b"3"}, "--expect-current", "--base", "current").returncode
            == 0
        )
        files = {
            p.relative_to(flow.root).as_posix(): p.read_bytes()
            for p in sorted((flow.root / "execution").rglob("*"))
            if p.is_file() and p.name != ".lock"
        }
        outputs.append(files)
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) >= 4


def test_decision_replays_to_the_same_bytes(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    from cas.digest import Digest
    from cas.local import LocalStore
    from promote.canonical import load_json
    from promote.policy.engines import PolicyBundle, RegorusEngine, decide

    store = LocalStore.existing(flow.root / ".cas")
    entry = json.loads((flow.root / "execution/ledger/entries/000000000001.json").read_bytes())
    decision_bytes = store.read_bytes(Digest.parse(entry["decision"]["digest"]))
    decision = json.loads(decision_bytes)
    bundle = PolicyBundle.decode(store.read_bytes(Digest.parse(decision["policy"]["digest"])))
    input_doc = load_json(store.read_bytes(Digest.parse(decision["input"]["digest"])))
    replayed = decide(RegorusEngine(), bundle, input_doc)
    assert replayed.encode() == decision_bytes


def test_copy_mode(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws", "--mode", "copy")
    assert flow.release({"release/a": b"1", "release/d/b": b"2"}).returncode == 0
    a = flow.root / "release/a"
    assert a.read_bytes() == b"1" and not a.is_symlink()
    assert (a.stat().st_mode & 0o222) == 0
    assert flow.run("promote", "verify").returncode == 0
    assert flow.release({"release/a": b"3"}, "--expect-current").returncode == 0
    assert a.read_bytes() == b"3"
    (flow.root / "release/dropped").write_bytes(b"ad hoc")
    r = flow.run("promote", "verify")
    assert r.returncode == 3
    assert b"unpromoted" in r.stdout and b"release/dropped" in r.stdout


def test_verify_catches_a_file_dropped_into_the_view(flow: Flow) -> None:
    assert flow.release({"release/a": b"1"}).returncode == 0
    gen = (flow.root / ".promote/current").resolve()
    os.chmod(gen / "release", 0o755)
    (gen / "release/dropped").write_bytes(b"ad hoc")
    r = flow.run("promote", "verify", "--json")
    assert r.returncode == 3
    problems = json.loads(r.stdout)["problems"]
    assert [(p["kind"], p["location"]) for p in problems] == [("unpromoted", "release/dropped")]


def test_capsule_new_delete_removes_a_path(flow: Flow) -> None:
    assert flow.release({"release/a": b"1", "release/b": b"2"}).returncode == 0
    check = flow.check([flow.put(b"unrelated")])
    flow.ok(
        "promote",
        "capsule",
        "new",
        "--delete",
        "release/a",
        "--attestation",
        check,
        "--expect-current",
        "--base",
        "current",
        "-o",
        "del.json",
    )
    doc = json.loads((flow.root / "del.json").read_bytes())
    assert doc["targets"][0]["delete"] is True and "expect" in doc["targets"][0]
    r = flow.run("promote", "del.json")
    assert r.returncode == 0, r.stderr
    assert not (flow.root / "release/a").exists()
    assert (flow.root / "release/b").read_bytes() == b"2"
    assert report(flow)["changes"][0]["to"] is None
    assert flow.run("promote", "verify").returncode == 0
    assert flow.run("promote", "del.json").returncode == 5  # replay: the guard is stale


def test_capsule_new_needs_a_target_or_delete(flow: Flow) -> None:
    check = flow.check([flow.put(b"x")])
    r = flow.run("promote", "capsule", "new", "--attestation", check, "-o", "c.json")
    assert r.returncode == 2
    assert b"at least one --target or --delete" in r.stderr
