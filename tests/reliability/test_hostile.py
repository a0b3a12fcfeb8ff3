"""Hostile input: a fuzz of capsules and CHECK reports, and a table of attacks.

Invariant: whatever the bytes, the library boundary raises only its typed errors
(CasError subclasses), never anything else, and never plans an unjustified
promotion; through the real CLI every attack exits with its documented code and one
line on stderr, changes nothing, and leaves the checker clean.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability.checker import check, count
from reliability.scenario import Zygote, entries, prepare

from cas.errors import CasError
from promote.ledger.files import FileLedger
from promote.model import load_capsule, load_check_report
from promote.paths import check_allowed, check_path
from promote.workspace import Workspace

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
digests = st.one_of(
    st.text(max_size=80),
    st.builds(lambda h: "blake3:" + h, st.text("0123456789abcdefABCDEF", min_size=0, max_size=70)),
    st.sampled_from(["sha256:" + "ab" * 32, "blake3:" + "0" * 64, "BLAKE3:" + "ab" * 32]),
)
paths = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            "release/a",
            "release/../../etc/passwd",
            "/etc/passwd",
            "release//a",
            "release/a\x00",
            "releases/a",
            "release/A",
        ]
    ),
    st.builds(lambda s: "release/" + s, st.text(max_size=20)),
)
sizes = st.one_of(
    st.integers(min_value=-5, max_value=2**65), st.booleans(), st.floats(), st.text(max_size=3)
)


def fuzz(n: int) -> settings:
    return settings(FUZZ, max_examples=n)


def _target(path: str, digest: str, size: Any, extra: dict[str, Any]) -> dict[str, Any]:
    return {"path": path, "digest": digest, "size": size, **extra}


capsule_docs = st.fixed_dictionaries(
    {
        "schema": st.sampled_from(["promote-capsule/v1", "promote-capsule/v2", ""]),
        "targets": st.lists(
            st.builds(
                _target,
                paths,
                digests,
                sizes,
                st.dictionaries(st.sampled_from(["expect", "mode", "x"]), json_values, max_size=1),
            ),
            max_size=4,
        ),
        "evidence": st.fixed_dictionaries({"check_report": digests}),
    },
    optional={"base": digests, "meta": json_values, "extra": json_values},
)
check_docs = st.fixed_dictionaries(
    {
        "schema": st.sampled_from(["check-report/v1", "check-report/v0"]),
        "status": st.sampled_from(["pass", "fail", "PASS", ""]) | st.text(max_size=5),
        "subjects": st.lists(st.fixed_dictionaries({"digest": digests, "size": sizes}), max_size=4)
        | json_values,
        "checks": st.lists(
            st.fixed_dictionaries({"name": st.text(max_size=8), "status": st.text(max_size=5)}),
            max_size=3,
        )
        | json_values,
    },
    optional={"extra": json_values},
)


def _encode(doc: Any, how: int) -> bytes:
    text = json.dumps(doc, ensure_ascii=how % 2 == 0)
    return text.encode("utf-8", "surrogatepass")


def _only_typed(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except CasError:
        return None


def test_fuzz_capsules_and_check_reports(make_ws) -> None:
    """Only CasError from load_capsule, load_check_report and plan, on random bytes,
    random JSON and mutated documents; and a plan that allows is always justified."""
    from promote.gate import plan

    root = make_ws()
    ws = Workspace.load(root)
    ledger = FileLedger(ws.ledger_dir, ws.store)
    good = json.loads(prepare(root, {"release/a": b"fuzz"}, guards=False).read_bytes())
    before = entries(root)

    def justified(p: Any) -> None:
        """An allowing plan has all its evidence, re-derived here from the bytes: the
        CHECK report it names is in the store, intact, passes, has a check, and
        covers every target it does not delete by digest and size."""
        if p is None or not p.decision.allow:
            return
        report_bytes = ws.store.read_bytes(p.capsule.check_report)
        assert report_bytes == p.check_bytes
        report = json.loads(report_bytes)
        assert report["status"] == "pass", report
        assert report["checks"], report
        subjects = {(s["digest"], s["size"]) for s in report["subjects"]}
        for t in p.capsule.targets:
            check_path(t.path)
            check_allowed(t.path, ws.allow_list)
            if t.ref is None:
                continue
            ws.store.verify(t.ref)
            assert (str(t.ref.digest), t.ref.size) in subjects, (t, subjects)

    @fuzz(1000)
    @given(st.binary(max_size=300))
    def raw(data: bytes) -> None:
        count("fuzz", "cases")
        _only_typed(load_capsule, data)
        _only_typed(load_check_report, data)
        justified(_only_typed(plan, ws, ledger, data))

    @fuzz(1200)
    @given(capsule_docs, st.integers(0, 3))
    def capsules(doc: dict[str, Any], how: int) -> None:
        count("fuzz", "cases")
        data = _encode(doc, how)
        _only_typed(load_capsule, data)
        justified(_only_typed(plan, ws, ledger, data))

    @fuzz(800)
    @given(check_docs, st.integers(0, 3))
    def reports(doc: dict[str, Any], how: int) -> None:
        count("fuzz", "cases")
        data = _encode(doc, how)
        _only_typed(load_check_report, data)
        # the same report, put in the store and named by an otherwise good capsule
        ref = ws.store.put_bytes(data)
        cap = dict(good, evidence={"check_report": str(ref.digest)})
        justified(_only_typed(plan, ws, ledger, json.dumps(cap).encode()))

    @fuzz(500)
    @given(st.sampled_from(["targets", "evidence", "base", "schema"]), json_values)
    def mutated(key: str, value: Any) -> None:
        count("fuzz", "cases")
        justified(_only_typed(plan, ws, ledger, json.dumps({**good, key: value}).encode()))

    raw()
    capsules()
    reports()
    mutated()
    assert entries(root) == before  # plan writes nothing, ever


# -- attacks through the real CLI ---------------------------------------------------


def _capsule(root: Path, **over: Any) -> Path:
    doc = json.loads(prepare(root, {"release/a": b"payload"}, guards=False).read_bytes())
    doc.update(over)
    path = root / "attack.json"
    path.write_text(json.dumps(doc))
    return path


def _raw(root: Path, data: bytes) -> Path:
    path = root / "attack.json"
    path.write_bytes(data)
    return path


def _target_path(p: str) -> Any:
    def make(root: Path) -> Path:
        doc = json.loads(prepare(root, {"release/a": b"payload"}, guards=False).read_bytes())
        doc["targets"][0]["path"] = p
        return _raw(root, json.dumps(doc).encode())

    return make


def _other_algorithm(root: Path) -> Path:
    doc = json.loads(prepare(root, {"release/a": b"payload"}, guards=False).read_bytes())
    doc["targets"][0]["digest"] = "sha256:" + blake3.blake3(b"payload").hexdigest()
    return _raw(root, json.dumps(doc).encode())


def _same_size_other_artifact(root: Path) -> Path:
    from reliability.scenario import put

    other = put(root, b"bbbbbbb")
    return prepare(root, {"release/a": b"aaaaaaa"}, guards=False, check_subjects=[other])


def _store_symlink(root: Path) -> Path:
    """The object a capsule names is a symlink to a file outside the store."""
    cap = prepare(root, {"release/a": b"root:x:0:0"}, guards=False)
    h = blake3.blake3(b"root:x:0:0").hexdigest()
    obj = root / ".cas/objects/blake3" / h[:2] / h[2:]
    outside = root.parent / f"{root.name}-outside"
    outside.write_bytes(b"root:x:0:0")
    obj.unlink()
    obj.symlink_to(outside)
    return cap


def _split(data: bytes) -> tuple[str, str]:
    """The fan-out directory and file name of `data`'s object."""
    h = blake3.blake3(data).hexdigest()
    return h[:2], h[2:]


def _hostile_check_report(data: bytes) -> Any:
    def make(root: Path) -> Path:
        from reliability.scenario import put

        ref = put(root, data)
        # a v1 capsule: its unsigned CHECK report is read (and refused) as before
        return _capsule(
            root, schema="promote-capsule/v1", evidence={"check_report": str(ref.digest)}
        )

    return make


ATTACKS: dict[str, tuple[Any, int, list[tuple[str, str]]]] = {
    "path-traversal": (_target_path("release/../../etc/passwd"), 2, []),
    "absolute-path": (_target_path("/etc/passwd"), 2, []),
    "outside-allow-list": (_target_path("etc/passwd"), 4, []),
    "other-algorithm-digest": (_other_algorithm, 2, []),
    "huge-json": (lambda root: _raw(root, b'{"a":"' + b"x" * (17 << 20) + b'"}'), 2, []),
    "deeply-nested-json": (lambda root: _raw(root, b"[" * 100_000 + b"]" * 100_000), 2, []),
    "duplicate-keys": (
        lambda root: _raw(root, b'{"schema":"promote-capsule/v1","schema":"promote-capsule/v1"}'),
        2,
        [],
    ),
    "non-utf8": (lambda root: _raw(root, b'{"schema":"promote-capsule/v1\xff\xfe"}'), 2, []),
    "check-covers-other-artifact-same-size": (_same_size_other_artifact, 4, []),
    "check-report-nested": (_hostile_check_report(b"[" * 10_000 + b"]" * 10_000), 3, []),
    "check-report-duplicate-keys": (
        _hostile_check_report(b'{"schema":"check-report/v1","status":"pass","status":"fail"}'),
        3,
        [],
    ),
    "check-report-non-utf8": (_hostile_check_report(b'{"status":"\xff"}'), 3, []),
    "store-symlink-outside": (
        _store_symlink,
        3,
        [("not-regular", "objects/blake3/{}/{}".format(*_split(b"root:x:0:0")))],
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_through_the_cli(make_ws, cli: Zygote, name: str) -> None:
    make, code, damage = ATTACKS[name]
    root = make_ws()
    ok = prepare(root, {"release/keep": b"kept"}, name="ok")
    assert cli("promote", ok, cwd=root).returncode == 0
    before = entries(root)
    cap = make(root)
    r = cli("promote", cap, cwd=root)
    count("fuzz", "cases")
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.count(b"\n") == 1 and b"Traceback" not in r.stderr, r.stderr
    assert entries(root) == before
    report = json.loads((root / "execution/promote/report.json").read_bytes())
    assert report["status"] in ("failed", "denied") and report["ledger"] is None
    check(root, cli, category="fuzz", expect=damage)


def test_view_symlink_pointing_outside(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """A top directory of the view replaced by a link out of the workspace: the
    promotion commits, but nothing is ever written through the link."""
    root = make_ws()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.unlink(root / "release")
    os.symlink(outside, root / "release")
    cap = prepare(root, {"release/a": b"1"})
    r = cli("promote", cap, cwd=root)
    count("fuzz", "cases")
    assert r.returncode == 2 and b"not managed by promote" in r.stderr, r.stderr
    assert list(outside.iterdir()) == []
    check(root, cli, category="fuzz", expect=[("unpromoted", "release")], oracle=False)
    os.unlink(root / "release")  # the owner moves the foreign link away
    assert cli("promote", "recover", cwd=root).returncode == 0
    check(root, cli, category="fuzz")


def test_copy_view_symlink_pointing_outside(make_ws, cli: Zygote, tmp_path: Path) -> None:
    root = make_ws("copy")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "release").mkdir(exist_ok=True)
    os.symlink(outside, root / "release/sub")
    cap = prepare(root, {"release/sub/a": b"1"})
    r = cli("promote", cap, cwd=root)
    count("fuzz", "cases")
    assert r.returncode == 2 and b"symlink" in r.stderr, r.stderr
    assert list(outside.iterdir()) == []
    os.unlink(root / "release/sub")
    assert cli("promote", "recover", cwd=root).returncode == 0
    check(root, cli, category="fuzz")


@pytest.mark.parametrize("policy", ["missing-dir", "no-files", "empty", "unparsable"])
def test_broken_policy_denies(make_ws, cli: Zygote, policy: str) -> None:
    root = make_ws()
    pdir = root / "control/policy"
    if policy == "missing-dir":
        shutil.rmtree(pdir)
    else:
        for f in pdir.glob("*.rego"):
            f.unlink()
        if policy != "no-files":
            (pdir / "promote.rego").write_text(
                "" if policy == "empty" else "package promote\nallow if {"
            )
    cap = prepare(root, {"release/a": b"1"})
    r = cli("promote", cap, cwd=root)
    count("fuzz", "cases")
    assert r.returncode == 4, r.stderr
    report = json.loads((root / "execution/promote/report.json").read_bytes())
    assert report["status"] == "denied" and report["decision"]["allow"] is False
    assert report["reasons"]
    check(root, cli, category="fuzz")
