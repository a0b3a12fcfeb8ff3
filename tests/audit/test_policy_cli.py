"""`promote policy test` and `promote policy eval`, on real workspaces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers import Flow
from policy import opa_standin

POLICY = Path(__file__).parents[2] / "control" / "policy"


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow.init(tmp_path / "ws")


def write_policy(flow: Flow, name: str, text: str) -> None:
    path = flow.root / "control/policy" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_shipped_policy_tests_pass(flow: Flow) -> None:
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    *lines, summary = r.stdout.decode().splitlines()
    assert lines and all(line.startswith("PASS  data.promote_test.test_") for line in lines)
    assert re.fullmatch(
        rf"policy tests \(regorus [^)]+\): {len(lines)} passed, 0 failed.*", summary
    )
    doc = json.loads(flow.ok("promote", "policy", "test", "--json").stdout)
    assert doc["ok"] is True
    assert doc["summary"]["pass"] == len(lines) and doc["summary"]["fail"] == 0
    assert doc["engine"]["name"] == "regorus"


def test_every_rule_of_the_shipped_policy_is_covered(flow: Flow) -> None:
    """Each deny rule fires, and allow succeeds, in at least one shipped test."""
    doc = json.loads(flow.ok("promote", "policy", "test", "--coverage", "--json").stdout)
    assert doc["not_covered"] == {"promote.rego": []}
    rules = (POLICY / "promote.rego").read_text()
    tests = (POLICY / "promote_test.rego").read_text()
    # and each literal deny reason is asserted by name in a test
    for reason in re.findall(r'^deny contains "([^"]+)" if', rules, re.M):
        assert f'"{reason}"' in tests, reason
    for fmt in re.findall(r'msg := sprintf\("([^"]+)"', rules):
        longest = max(re.split(r"%[a-z]", fmt), key=len)  # its longest fixed part
        assert longest in tests, fmt
    # the workspace gets the very same files
    for name in ("promote.rego", "promote_test.rego"):
        assert (flow.root / "control/policy" / name).read_bytes() == (POLICY / name).read_bytes()


def test_coverage_shows_an_untested_rule(flow: Flow) -> None:
    write_policy(
        flow,
        "extra.rego",
        'package promote\nimport rego.v1\n\ndeny contains "no fridays" if {\n'
        '\tinput.day == "friday"\n}\n',
    )
    r = flow.run("promote", "policy", "test", "--coverage")
    assert r.returncode == 0
    assert b"not covered: extra.rego: lines 4\n" in r.stdout
    assert b"not covered: promote.rego: lines none" in r.stdout


EXTRA_TESTS = (
    "package more.extra_test\nimport rego.v1\n\n"
    "test_true if { true }\n"
    "test_false if { 1 == 2 }\n"
    "test_value := 7\n"
    "test_boom if { x := 1 / 0; x > 0 }\n"
    "todo_test_later if { false }\n"
    "helper(x) := x\n"
    "test_uses_helper if { helper(1) == 1 }\n"
)


def test_failures_errors_and_skips(flow: Flow) -> None:
    write_policy(flow, "more/extra_test.rego", EXTRA_TESTS)
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 1
    out = r.stdout.decode()
    assert "PASS  data.more.extra_test.test_true\n" in out
    assert "FAIL  data.more.extra_test.test_false  (more/extra_test.rego:5): got undefined" in out
    assert "FAIL  data.more.extra_test.test_value  (more/extra_test.rego:6): got 7" in out
    assert "ERROR data.more.extra_test.test_boom  (more/extra_test.rego:7): " in out
    assert "divide by zero" in out
    assert "SKIP  data.more.extra_test.todo_test_later\n" in out
    assert "PASS  data.more.extra_test.test_uses_helper\n" in out
    assert "PASS  data.promote_test.test_allow_with_complete_evidence" in out
    assert re.search(r"\d+ passed, 2 failed, 1 errors, 1 skipped", r.stderr.decode())
    doc = json.loads(flow.run("promote", "policy", "test", "--json").stdout)
    assert doc["ok"] is False
    assert doc["summary"] == {
        "pass": doc["summary"]["pass"],
        "fail": 2,
        "error": 1,
        "skip": 1,
    }


def test_skips_alone_pass(flow: Flow) -> None:
    write_policy(
        flow, "later_test.rego", "package later\nimport rego.v1\ntodo_test_x if { false }\n"
    )
    assert flow.run("promote", "policy", "test").returncode == 0


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"broken.rego": "package promote\nimport rego.v1\nallow if {\n"}, b"does not compile"),
        ({"promote_test.rego": "package promote_test\nx := 1\n"}, b"no tests found"),
    ],
    ids=["syntax-error", "no-tests"],
)
def test_policy_test_fails_when_it_cannot_test(
    flow: Flow, files: dict[str, str], message: bytes
) -> None:
    for name, text in files.items():
        write_policy(flow, name, text)
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 1
    assert message in r.stderr
    assert b"Traceback" not in r.stderr


def test_no_policy_directory(flow: Flow) -> None:
    for f in (flow.root / "control/policy").iterdir():
        f.unlink()
    (flow.root / "control/policy").rmdir()
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 1
    assert b"policy directory" in r.stderr


def test_engine_without_a_test_runner(flow: Flow) -> None:
    r = flow.run("promote", "policy", "test", "--engine", "opa-rest")
    assert r.returncode == 2
    assert b"cannot run tests" in r.stderr


def use_opa(flow: Flow, binary: str) -> None:
    cfg = flow.root / "control/promote/config.json"
    config = json.loads(cfg.read_bytes())
    config["engine"] = {"kind": "opa", "binary": binary}
    cfg.write_text(json.dumps(config))


@pytest.fixture
def opa(tmp_path: Path) -> str:
    """An `opa` executable: the stand-in of tests/policy, running real OPA v1.20.2."""
    return opa_standin.install(str(tmp_path))


def test_opa_test_results_are_read(flow: Flow, opa: str) -> None:
    """`opa test --format json` of real OPA: pass, fail, error and skip, as regorus says."""
    write_policy(flow, "more/extra_test.rego", EXTRA_TESTS)
    use_opa(flow, opa)
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 1, r.stderr.decode()
    lines = r.stdout.decode().splitlines()
    assert [ln for ln in lines if "more.extra_test" in ln] == [
        "PASS  data.more.extra_test.test_true",
        "FAIL  data.more.extra_test.test_false  (more/extra_test.rego:5)",
        "FAIL  data.more.extra_test.test_value  (more/extra_test.rego:6)",
        "ERROR data.more.extra_test.test_boom  (more/extra_test.rego:7): div: divide by zero",
        "SKIP  data.more.extra_test.todo_test_later",
        "PASS  data.more.extra_test.test_uses_helper",
    ]
    assert re.search(
        rb"policy tests \(opa 1\.20\.2\): \d+ passed, 2 failed, 1 errors, 1 skipped", r.stderr
    )
    opa_doc = json.loads(flow.run("promote", "policy", "test", "--json").stdout)
    regorus = json.loads(
        flow.run("promote", "policy", "test", "--json", "--engine", "regorus").stdout
    )
    assert opa_doc["summary"] == regorus["summary"]
    status = {r["package"] + "." + r["name"]: r["status"] for r in regorus["results"]}
    assert {r["package"] + "." + r["name"]: r["status"] for r in opa_doc["results"]} == status


def test_opa_all_passing_and_broken(flow: Flow, opa: str) -> None:
    use_opa(flow, opa)
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 0, r.stderr.decode()
    assert re.search(rb"policy tests \(opa 1\.20\.2\): \d+ passed, 0 failed", r.stdout)
    write_policy(flow, "broken.rego", "package promote\nimport rego.v1\nallow if {\n")
    r = flow.run("promote", "policy", "test")
    assert r.returncode == 1
    assert b"opa test failed" in r.stderr and b"rego_parse_error" in r.stderr
    assert len(r.stderr.decode().splitlines()) == 1


# -- promote policy eval ------------------------------------------------------------


APP = "blake3:" + "1" * 64


def policy_input(**overrides: object) -> dict[str, object]:
    """A promote-policy-input/v2 the default policy allows."""
    target = {"path": "release/app.whl", "digest": APP, "size": 3}
    doc: dict[str, object] = {
        "schema": "promote-policy-input/v2",
        "kind": "release",
        "capsule": {
            "schema": "promote-capsule/v2",
            "targets": [target],
            "evidence": {"attestations": ["blake3:" + "3" * 64]},
        },
        "capsule_digest": "blake3:" + "2" * 64,
        "attestations": [
            {
                "digest": "blake3:" + "3" * 64,
                "signers": ["ci-checker"],
                "roles": ["checker"],
                "predicate_type": "https://cas-promote.invalid/check-report/v1",
                "subjects": [
                    {"name": "app.whl", "digest": {"blake3": "1" * 64}, "targets": [dict(target)]}
                ],
                "predicate": {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]},
            }
        ],
        "current": {"release/app.whl": None},
        "allow_list": ["release/"],
        "ledger": {"seq": 0, "head": None},
        "control": None,
    }
    doc.update(overrides)
    return doc


def test_eval_allow(flow: Flow) -> None:
    (flow.root / "in.json").write_text(json.dumps(policy_input()))
    r = flow.run("promote", "policy", "eval", "--input", "in.json")
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().startswith("allow (regorus ")
    doc = json.loads(flow.ok("promote", "policy", "eval", "--input", "in.json", "--json").stdout)
    assert (doc["schema"], doc["allow"], doc["deny"]) == ("promote-decision/v1", True, [])


def test_eval_deny_shows_every_reason(flow: Flow) -> None:
    bad = policy_input(
        allow_list=["other/"], current={"release/app.whl": {"digest": APP, "size": 3}}
    )
    r = flow.run("promote", "policy", "eval", "--input", "-", input=json.dumps(bad).encode())
    assert r.returncode == 4
    lines = r.stdout.decode().splitlines()
    assert lines[0].startswith("deny (regorus ")
    assert lines[1:] == [
        f"  - target release/app.whl already holds {APP}: nothing to promote",
        "  - target release/app.whl is outside the allow-list",
    ]
    r = flow.run(
        "promote", "policy", "eval", "--input", "-", "--json", input=json.dumps(bad).encode()
    )
    assert r.returncode == 4
    assert len(json.loads(r.stdout)["deny"]) == 2


def test_eval_explains_a_real_denial(flow: Flow) -> None:
    """The input a denied run recorded, evaluated again: the same reasons."""
    write_policy(
        flow,
        "ci.rego",
        'package promote\nimport rego.v1\n\ndeny contains "builder must be ci" if {\n'
        '\tinput.capsule.meta.builder != "ci"\n}\n',
    )
    r = flow.release({"release/app.whl": b"wheel"}, "--builder", "laptop")
    assert r.returncode == 4
    report = json.loads((flow.root / "execution/promote/report.json").read_bytes())
    digest = report["decision"]["input"]
    r = flow.run("promote", "policy", "eval", "--input", digest)
    assert r.returncode == 4, r.stderr.decode()
    assert r.stdout.decode().splitlines()[1:] == ["  - builder must be ci"]
    doc = json.loads(flow.run("promote", "policy", "eval", "--input", digest, "--json").stdout)
    assert doc["input"]["digest"] == digest  # the very document the gate decided on
    assert doc["policy"]["digest"] == report["decision"]["policy"]


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{", 2), (b'{"a": 1, "a": 2}', 2), (None, 2)],
    ids=["not-json", "duplicate-key", "missing"],
)
def test_eval_bad_input(flow: Flow, content: bytes | None, code: int) -> None:
    if content is not None:
        (flow.root / "in.json").write_bytes(content)
    r = flow.run("promote", "policy", "eval", "--input", "in.json")
    assert r.returncode == code
    assert r.stderr.startswith(b"promote: error: ")


def test_eval_unknown_digest(flow: Flow) -> None:
    r = flow.run("promote", "policy", "eval", "--input", "blake3:" + "9" * 64)
    assert r.returncode == 3
    assert b"not in the store" in r.stderr


def test_eval_integer_beyond_2_53_is_usage(flow: Flow) -> None:
    """OPA reads such a number as a float, regorus does not: refused, not decided."""
    doc = policy_input()
    subject = doc["attestations"][0]["subjects"][0]  # type: ignore[index]
    subject["targets"][0]["size"] = 2**53
    r = flow.run("promote", "policy", "eval", "--input", "-", input=json.dumps(doc).encode())
    assert r.returncode == 2, r.stderr
    assert r.stdout == b""
    lines = r.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "integer 9007199254740992 is beyond 2^53 - 1" in lines[0]
    subject["targets"][0]["size"] = 2**53 - 1
    r = flow.run("promote", "policy", "eval", "--input", "-", input=json.dumps(doc).encode())
    assert r.returncode == 4, r.stderr  # a bound size, but not the target's: denied


def test_eval_engine_error_says_what_not_only_where(flow: Flow) -> None:
    """Regorus's message reaches the user, in one line, with no stray traceback."""
    write_policy(flow, "boom.rego", "package promote\nimport rego.v1\n\nallow := 1 / 0 == 0\n")
    doc = json.dumps(policy_input()).encode()
    r = flow.run("promote", "policy", "eval", "--input", "-", input=doc)
    assert r.returncode == 4, r.stderr
    assert b"Traceback" not in r.stderr and b"unsendable" not in r.stderr
    reasons = r.stdout.decode().splitlines()[1:]
    assert reasons == ["  - policy engine error: regorus: boom.rego:4:12: divide by zero"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"kind": None}, "kind: None is not one of ['release', 'control']"),
        ({"allow_list": "release/"}, "allow_list: 'release/' is not of type 'array'"),
        ({"schema": "promote-policy-input/v1"}, "schema: 'promote-policy-input/v2' was expected"),
        ({"check_report": {}}, "(top): Additional properties are not allowed"),
    ],
    ids=["kind", "allow-list", "v1", "unknown-field"],
)
def test_eval_of_an_input_that_fails_its_schema_is_usage(
    flow: Flow, change: dict[str, object], error: str
) -> None:
    """Only what the gate could build is decided (control/promote/policy_input.schema.json):
    exit 2, one line naming the schema and where the input departs from it."""
    doc = policy_input(**change)
    r = flow.run("promote", "policy", "eval", "--input", "-", input=json.dumps(doc).encode())
    assert r.returncode == 2, r
    assert r.stdout == b""
    [line] = r.stderr.decode().splitlines()
    assert line.startswith(
        "promote: error: input - does not match promote-policy-input/v2"
        " (policy_input.schema.json): "
    ), line
    assert error in line, line
    r = flow.run("promote", "policy", "eval", "--input", "-", input=b"{}")
    assert r.returncode == 2 and b"'schema' is a required property" in r.stderr, r.stderr
