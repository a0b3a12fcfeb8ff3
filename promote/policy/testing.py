"""`promote policy test`: run the Rego tests of a policy directory, as `opa test` does.

A test is a rule whose name starts with `test_`, in any package of any `.rego` file
under the policy directory (test files included). It passes when it is defined and
`true`; it fails when it is undefined or has any other value; it errors when its
evaluation fails. Rules named `todo_test_*` are reported as skipped.

Engines: `regorus` (embedded, the default) evaluates each test rule in-process; `opa`
runs `opa test --format json` on a copy of the files. The REST engine has no test
runner, so it is refused.

One difference from `opa test`: a test defined more than once (several bodies under
one name) is one test here, passing when any body does; OPA reports each body.
"""

from __future__ import annotations

import abc
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from cas.errors import EXIT_INTERNAL
from promote.errors import PromoteError, WorkspaceError
from promote.policy.engines import DEFAULT_TIMEOUT, PolicyBundle, engine_error_text

__all__ = [
    "PolicyTestError",
    "TestResult",
    "TestRun",
    "run_policy_tests",
    "tester_from_config",
]

STATUSES = ("pass", "fail", "error", "skip")


class PolicyTestError(PromoteError):
    """The tests could not run at all: the policy does not compile, or the engine failed."""

    exit_code = EXIT_INTERNAL


@attrs.frozen
class TestResult:
    """One test: where it is, and how it went."""

    __test__ = False  # not a pytest class, whatever its name

    package: str
    name: str
    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    location: str = ""
    detail: str = ""

    @property
    def ref(self) -> str:
        return f"{self.package}.{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "name": self.name,
            "status": self.status,
            "location": self.location,
            "detail": self.detail,
        }


@attrs.frozen
class TestRun:
    """Every test of a policy directory, run by one engine."""

    __test__ = False

    engine: str
    engine_version: str
    results: tuple[TestResult, ...]
    coverage: Mapping[str, tuple[int, ...]] | None = None

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        """True when at least one test ran and none failed or errored."""
        return bool(self.results) and not (self.count("fail") or self.count("error"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "engine": {"name": self.engine, "version": self.engine_version},
            "ok": self.ok,
            "results": [r.to_dict() for r in self.results],
            "summary": {s: self.count(s) for s in STATUSES},
        }
        if self.coverage is not None:
            out["not_covered"] = {f: list(lines) for f, lines in sorted(self.coverage.items())}
        return out


class Tester(abc.ABC):
    name: str

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version."""

    @abc.abstractmethod
    def run(self, bundle: PolicyBundle, coverage: bool = False) -> TestRun:
        """Run every test rule of `bundle` (which must include the test files).

        Raises:
            PolicyTestError: the policy does not compile, or the engine failed.
        """


def _error_text(e: object) -> str:
    """The useful part of an engine error: where it points and what it says."""
    return engine_error_text(e)


def _ref_parts(node: Any) -> list[str] | None:
    """The names of a simple reference `a.b.c` in regorus's AST, or None."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    kind, body = next(iter(node.items()))
    if kind == "Var":
        return [str(body["value"])]
    if kind == "RefDot":
        parts = _ref_parts(body["refr"])
        field = body.get("field")
        if parts is None or not isinstance(field, list) or len(field) != 2:
            return None
        return [*parts, str(field[1])]
    return None


def _test_rules(ast_json: str) -> list[tuple[str, str, str]]:
    """(package, rule path, "file:line") of every test_/todo_test_ rule, in file order."""
    found: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for module in json.loads(ast_json):
        source = module.get("source", {}).get("file", "?")
        ast = module["ast"]
        package = _ref_parts(ast["package"]["refr"])
        if package is None:
            continue
        pkg = "data." + ".".join(package)
        for rule in ast["rules"]:
            spec = rule.get("Spec")
            if not spec:
                continue
            (kind, head), *_ = spec["head"].items()
            if kind == "Func":  # a function named test_* is not a test
                continue
            parts = _ref_parts(head.get("refr"))
            if not parts or not parts[-1].startswith(("test_", "todo_test_")):
                continue
            name = ".".join(parts)
            if (pkg, name) in seen:
                continue
            seen.add((pkg, name))
            found.append((pkg, name, f"{source}:{spec['span']['line']}"))
    return found


class RegorusTester(Tester):
    """Tests in-process with the embedded engine (one engine, so coverage adds up)."""

    name = "regorus"

    def version(self) -> str:
        from promote.policy.engines import RegorusEngine

        return RegorusEngine().version()

    def run(self, bundle: PolicyBundle, coverage: bool = False) -> TestRun:
        os.environ.setdefault("RUST_BACKTRACE", "0")
        import regorus

        base = regorus.Engine()
        if coverage:
            base.set_enable_coverage(True)
        try:
            for name, text in sorted(bundle.files.items()):
                base.add_policy(name, text)
            tests = _test_rules(base.get_ast_as_json())
        except Exception as e:
            raise PolicyTestError(f"the policy does not compile: {_error_text(e)}") from None
        results = []
        for pkg, name, location in tests:
            short = name.rsplit(".", 1)[-1]
            if short.startswith("todo_test_"):
                results.append(TestResult(pkg, name, "skip", location))
                continue
            try:
                value = base.eval_rule(f"{pkg}.{name}")
            except Exception as e:
                results.append(TestResult(pkg, name, "error", location, _error_text(e)))
                continue
            if value is True:
                results.append(TestResult(pkg, name, "pass", location))
            else:
                got = "undefined" if value is None else json.dumps(value)
                results.append(TestResult(pkg, name, "fail", location, f"got {got}"))
        not_covered = None
        if coverage:
            report = json.loads(base.get_coverage_report_as_json())
            not_covered = {
                f["path"]: tuple(f["not_covered"])
                for f in report["files"]
                if not f["path"].endswith("_test.rego")
            }
        return TestRun(self.name, self.version(), tuple(results), not_covered)


class OpaTester(Tester):
    """`opa test --format json`, for users of a real OPA binary."""

    name = "opa"

    def __init__(self, binary: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        from promote.policy.engines import OpaCliEngine

        self.engine = OpaCliEngine(binary, timeout)  # finds the binary, or says why not
        self.binary = self.engine.binary
        self.timeout = timeout

    def version(self) -> str:
        return self.engine.version()

    def run(self, bundle: PolicyBundle, coverage: bool = False) -> TestRun:
        if coverage:
            raise WorkspaceError("--coverage needs the regorus engine (or run opa test --coverage)")
        with tempfile.TemporaryDirectory(prefix="promote-opa-test-") as d:
            for name, text in sorted(bundle.files.items()):
                path = Path(d, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            try:
                r = subprocess.run(
                    [self.binary, "test", "--format", "json", d],
                    capture_output=True,
                    timeout=self.timeout,
                )
            except subprocess.TimeoutExpired:
                raise PolicyTestError(f"opa test timed out after {self.timeout:g}s") from None
            except OSError as e:
                raise PolicyTestError(f"opa test: {e}") from None
            try:
                answer = json.loads(r.stdout)
                if not isinstance(answer, list):
                    raise ValueError("not a list of results")
                results = tuple(_opa_result(a, d) for a in answer)
            except (ValueError, KeyError, TypeError):
                err = (r.stderr or r.stdout).decode(errors="replace").strip()
                first = err.splitlines()[0] if err else f"exit status {r.returncode}"
                raise PolicyTestError(f"opa test failed: {first}") from None
        return TestRun(self.name, self.version(), results)


def _opa_result(doc: Mapping[str, Any], tmpdir: str) -> TestResult:
    """One entry of `opa test --format json` (tester.Result)."""
    loc = doc.get("location") or {}
    where = ""
    if loc.get("file"):
        where = f"{os.path.relpath(loc['file'], tmpdir)}:{loc.get('row', 0)}"
    pkg, name = str(doc["package"]), str(doc["name"])
    if doc.get("error"):
        err = doc["error"]
        detail = err.get("message", json.dumps(err)) if isinstance(err, dict) else str(err)
        return TestResult(pkg, name, "error", where, detail)
    if doc.get("fail"):
        return TestResult(pkg, name, "fail", where)
    if doc.get("skip"):
        return TestResult(pkg, name, "skip", where)
    return TestResult(pkg, name, "pass", where)


def tester_from_config(config: Mapping[str, Any], override: str | None = None) -> Tester:
    """The test runner of the configured engine (`--engine` overrides `engine.kind`).

    Raises:
        WorkspaceError: the engine cannot run tests, or is unknown.
    """
    kind = override or config.get("kind", "regorus")
    if kind == "regorus":
        return RegorusTester()
    if kind == "opa":
        return OpaTester(config.get("binary"), float(config.get("timeout", DEFAULT_TIMEOUT)))
    if kind == "opa-rest":
        raise WorkspaceError(
            "engine 'opa-rest' cannot run tests (OPA's REST API has no test runner);"
            " use --engine regorus or --engine opa"
        )
    raise WorkspaceError(f"unknown policy engine {kind!r} (want regorus, opa or opa-rest)")


def run_policy_tests(tester: Tester, bundle: PolicyBundle, coverage: bool = False) -> TestRun:
    """Run the tests; see the module docstring for what passes.

    Raises:
        PolicyTestError: the policy does not compile, or the engine failed.
    """
    return tester.run(bundle, coverage)
