"""Fail closed, for every engine kind: regorus, the `opa` CLI, OPA's REST API.

Invariant: an engine error, a crash or an undefined result is a deny (exit 4),
recorded with its reason in execution/promote/report.json, and nothing is promoted. A
timeout is an engine error (exit 1): no decision is recorded, since a decision must not
depend on load, and nothing is promoted either.

The `opa` and `opa-rest` rows run real OPA v1.20.2 through the stand-ins of
tests/policy (an `opa` executable, an OPA REST API server on loopback). Fakes, named
so, remain only for what real OPA does not do on demand: hang, crash, be killed,
answer garbage, fail with HTTP 500.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from policy import opa_standin
from policy.opa_rest_standin import StandinServer
from reliability.checker import check, count
from reliability.scenario import Zygote, entries, prepare

from promote.canonical import pretty


def _engine(root: Path, engine: dict) -> None:
    cfg = root / "control/promote/config.json"
    doc = json.loads(cfg.read_bytes())
    doc["engine"] = engine
    cfg.write_bytes(pretty(doc))


def _timed_out(root: Path, cli: Zygote, timeout: float) -> None:
    """Exit 1 at the configured deadline (the one line names it), no decision stored
    or recorded, nothing committed. How soon past the deadline promote gives up is
    the benchmark's business (bench/run.py, engine-timeout), not a test's."""
    cap = prepare(root, {"release/a": b"1"})
    r = cli("promote", cap, cwd=root)
    count("fail-closed", "cases")
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"timed out after {timeout:g}s".encode() in r.stderr, r.stderr
    report = json.loads((root / "execution/promote/report.json").read_bytes())
    assert report["status"] == "failed", report
    assert report.get("decision") is None, report
    assert entries(root) == []
    check(root, cli, category="fail-closed")


def _denied(root: Path, cli: Zygote, reason: str) -> None:
    cap = prepare(root, {"release/a": b"1"})
    r = cli("promote", cap, cwd=root)
    count("fail-closed", "cases")
    assert r.returncode == 4, (r.returncode, r.stderr)
    report = json.loads((root / "execution/promote/report.json").read_bytes())
    assert report["status"] == "denied", report
    assert report["decision"]["allow"] is False
    assert any(reason in x for x in report["reasons"]), report["reasons"]
    assert entries(root) == []
    check(root, cli, category="fail-closed")


REGO = {
    "runtime-error": ("package promote\nimport rego.v1\nallow := 1 / 0 == 0\n", "policy"),
    # under non-strict built-in errors this deny would be undefined, and allow true
    "builtin-error": (
        'package promote\nimport rego.v1\nallow := true\ndeny contains "x" if startswith(input.capsule.targets, "a")\n',
        "policy engine error",
    ),
    "undefined": ("package promote\nimport rego.v1\nother := true\n", "undefined"),
    "allow-null": ("package promote\nimport rego.v1\nallow := null\n", "undefined"),
    "allow-not-boolean": ('package promote\nimport rego.v1\nallow := "true"\n', "not true"),
    "deny-wrong-type": ("package promote\nimport rego.v1\nallow := true\ndeny := 3\n", "deny"),
    "syntax": ("package promote\nallow if {\n", "policy engine error"),
}


@pytest.fixture(scope="module")
def opa_rest_standin() -> Iterator[StandinServer]:
    """The OPA REST API stand-in: real OPA v1.20.2 on loopback."""
    server = StandinServer()
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["regorus", "opa", "opa-rest"])
@pytest.mark.parametrize("case", list(REGO))
def test_engines_fail_closed(
    make_ws, cli: Zygote, case: str, kind: str, tmp_path: Path, opa_rest_standin: StandinServer
) -> None:
    """The same broken policy is a deny for regorus and for real OPA, CLI and REST."""
    root = make_ws()
    text, reason = REGO[case]
    for f in (root / "control/policy").glob("*.rego"):
        f.unlink()
    (root / "control/policy/promote.rego").write_text(text)
    if kind == "opa":
        _engine(root, {"kind": "opa", "binary": opa_standin.install(str(tmp_path)), "timeout": 20})
    elif kind == "opa-rest":
        try:
            opa_rest_standin.load({"promote.rego": text})
        except RuntimeError:  # OPA refuses it too: the server holds no promote.rego
            opa_rest_standin.load({})
        _engine(root, {"kind": "opa-rest", "url": opa_rest_standin.url, "timeout": 20})
    _denied(root, cli, reason)


# A policy that keeps regorus busy for hours (10^10 steps) in constant memory.
SLOW_REGO = """package promote
import rego.v1
allow if {
	every i in numbers.range(1, 100000) {
		every j in numbers.range(1, 100000) { i + j > 0 }
	}
}
"""


def test_regorus_timeout_is_an_engine_error(make_ws, cli: Zygote) -> None:
    """engine.timeout bounds regorus too: its child process is killed at the deadline."""
    root = make_ws()
    for f in (root / "control/policy").glob("*.rego"):
        f.unlink()
    (root / "control/policy/promote.rego").write_text(SLOW_REGO)
    _engine(root, {"kind": "regorus", "timeout": 2})
    _timed_out(root, cli, 2)


def test_fake_opa_cli_timeout_is_an_engine_error(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """A fake `opa` binary that hangs past engine.timeout: exit 1, no decision, and
    the engine was killed at the deadline, not waited for (it does not outlive
    promote)."""
    root = make_ws()
    fake = tmp_path / "opa"
    pid = tmp_path / "opa.pid"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo "Version: 0.0.0-fake"; exit 0; fi\n'
        f"cat >/dev/null\necho $$ > {pid}\nexec sleep 600\n"
    )
    fake.chmod(0o755)
    _engine(root, {"kind": "opa", "binary": str(fake), "timeout": 1})
    _timed_out(root, cli, 1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid.read_text()), 0)


FAKE_OPA = {
    "crashes": ("echo 'opa: panic: boom' >&2; exit 2", "opa eval failed"),
    "killed": ("kill -9 $$", "opa eval failed"),
    "garbage": ("echo 'not json'", "unreadable output"),
}


@pytest.mark.parametrize("case", list(FAKE_OPA))
def test_fake_opa_cli_fails_closed(make_ws, cli: Zygote, case: str, tmp_path: Path) -> None:
    """A fake `opa` binary that crashes, is killed or answers nonsense."""
    root = make_ws()
    body, reason = FAKE_OPA[case]
    fake = tmp_path / "opa"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = version ]; then echo "Version: 0.0.0-fake"; exit 0; fi\n'
        "cat >/dev/null\n" + body + "\n"
    )
    fake.chmod(0o755)
    _engine(root, {"kind": "opa", "binary": str(fake), "timeout": 1})
    _denied(root, cli, reason)


class _FakeOpaHandler(http.server.BaseHTTPRequestHandler):
    """A fake OPA server: answers every request with one canned misbehaviour."""

    mode = "error"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        mode = type(self).mode
        if mode == "hang":
            time.sleep(4)
        if mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b'{"code":"internal_error","message":"boom"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"<html>" if mode == "garbage" else b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_opa_server() -> Iterator[tuple[str, type[_FakeOpaHandler]]]:
    handler = type("Handler", (_FakeOpaHandler,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join()


REST = {
    "error": "HTTP 500",
    "garbage": "not a JSON answer",
}


@pytest.mark.parametrize("mode", list(REST))
def test_fake_opa_rest_fails_closed(make_ws, cli: Zygote, fake_opa_server, mode: str) -> None:
    url, handler = fake_opa_server
    handler.mode = mode
    root = make_ws()
    _engine(root, {"kind": "opa-rest", "url": url, "timeout": 1})
    _denied(root, cli, REST[mode])


def test_fake_opa_rest_timeout_is_an_engine_error(make_ws, cli: Zygote, fake_opa_server) -> None:
    url, handler = fake_opa_server
    handler.mode = "hang"
    root = make_ws()
    _engine(root, {"kind": "opa-rest", "url": url, "timeout": 1})
    _timed_out(root, cli, 1)


def test_opa_rest_unreachable(make_ws, cli: Zygote) -> None:
    root = make_ws()
    _engine(root, {"kind": "opa-rest", "url": "http://127.0.0.1:9", "timeout": 1})
    _denied(root, cli, "unreachable")
