"""`opa-rest` records what it ran (ADR 11), against the OPA REST stand-in (real OPA).

The engine checks that the server holds exactly the pinned bundle, before and after it
asks the rules; records the server's own version; evaluates with strict built-in
errors; sends its token (from `PROMOTE_OPA_TOKEN` only) to `engine.url` and nowhere
else; and refuses plain http to anything but loopback unless `engine.insecure`.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Flow
from opa_rest_standin import StandinServer

from promote.errors import WorkspaceError
from promote.policy.engines import (
    OpaRestEngine,
    PolicyBundle,
    RegorusEngine,
    decide,
    engine_from_config,
    load_bundle,
)

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "promote/data/policy"
VECTORS = json.loads((Path(__file__).parent / "vectors.json").read_text())["vectors"]
TOKEN = "s3cr3t-opa-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinServer]:
    """The OPA REST stand-in (real OPA v1.20.2), requiring TOKEN, logging requests."""
    log = tmp_path_factory.mktemp("opa-rest") / "requests.jsonl"
    s = StandinServer(token=TOKEN, log_path=str(log))
    yield s
    s.stop()


@pytest.fixture
def bundle(server: StandinServer) -> PolicyBundle:
    b = load_bundle(POLICY)
    server.load(dict(b.files))
    return b


def engine(server: StandinServer, token: str | None = TOKEN) -> OpaRestEngine:
    return OpaRestEngine(server.url, token, timeout=20)


def test_vectors_agree_with_regorus_and_record_opas_version(
    server: StandinServer, bundle: PolicyBundle
) -> None:
    for vector in VECTORS:
        rest = decide(engine(server), bundle, vector["input"])
        ref = decide(RegorusEngine(), bundle, vector["input"])
        assert (rest.engine, rest.engine_version) == ("opa-rest", "1.20.2")
        assert (rest.allow, rest.deny, rest.policy, rest.input) == (
            ref.allow,
            ref.deny,
            ref.policy,
            ref.input,
        ), vector["name"]


@pytest.mark.parametrize("change", ["missing", "changed", "extra", "empty"])
def test_a_server_holding_another_policy_is_refused(
    server: StandinServer, bundle: PolicyBundle, change: str
) -> None:
    """The decision names the bundle's digest only when the server runs that bundle."""
    files = dict(bundle.files)
    text = files["promote.rego"]
    served = {
        "missing": {},
        "changed": {"promote.rego": text.replace("default allow := false", "")},
        "extra": {
            **files,
            "zz.rego": 'package promote\nimport rego.v1\ndeny contains "x" if false\n',
        },
        "empty": {},
    }[change]
    if change == "missing":  # a helper module is missing from the server
        bundle = PolicyBundle({**files, "helper.rego": "package promote\nhelper := 1\n"})
        served = files
    server.load(served)
    complete = VECTORS[0]["input"]
    decision = decide(engine(server), bundle, complete)
    assert decision.allow is False
    [reason] = decision.deny
    assert f"does not serve the pinned policy {bundle.ref().digest}" in reason, reason
    want = {
        "missing": "missing or changed: helper.rego",
        "changed": "missing or changed: promote.rego",
        "extra": "not in the bundle: zz.rego",
        "empty": "missing or changed: promote.rego",
    }[change]
    assert want in reason, reason


def test_a_builtin_error_is_an_engine_error_not_an_undefined_rule(
    server: StandinServer, bundle: PolicyBundle
) -> None:
    """Strict built-in errors: OPA answers 500 with its error, the gate denies.

    The default policy raises on no input (its type guards), so a module without them
    is added: `startswith(7, ...)` raises."""
    raising = PolicyBundle(
        {
            **bundle.files,
            "unguarded.rego": "package promote\nimport rego.v1\n\n"
            'deny contains "release" if startswith(input.capsule.targets[0].path, "r")\n',
        },
        bundle.package,
    )
    server.load(dict(raising.files))
    doc = json.loads(json.dumps(VECTORS[0]["input"]))
    doc["capsule"]["targets"][0]["path"] = 7
    assert decide(RegorusEngine(), bundle, doc).deny  # a deny, not an error, without it
    decision = decide(engine(server), raising, doc)
    assert decision.allow is False
    assert any("HTTP 500" in r and "must be string" in r for r in decision.deny), decision.deny


def test_a_wrong_token_is_refused_by_the_server(
    server: StandinServer, bundle: PolicyBundle
) -> None:
    decision = decide(engine(server, token="wrong"), bundle, VECTORS[0]["input"])
    assert decision.allow is False
    assert decision.engine_version == "unknown"
    assert any("HTTP 401" in r for r in decision.deny), decision.deny


# -- configuration: URL, token, what is sent -------------------------------------


@pytest.mark.parametrize(
    ("url", "insecure", "ok"),
    [
        ("http://127.0.0.1:8181", False, True),
        ("http://127.1.2.3:8181", False, True),
        ("http://localhost:8181", False, True),
        ("http://[::1]:8181", False, True),
        ("https://opa.example.com", False, True),
        ("http://opa.example.com:8181", False, False),
        ("http://10.0.0.5:8181", False, False),
        ("http://opa.example.com:8181", True, True),
        ("ftp://127.0.0.1/", False, False),
        ("https://user:pw@opa.example.com", False, False),
    ],
)
def test_plain_http_only_to_loopback(url: str, insecure: bool, ok: bool) -> None:
    config = {"kind": "opa-rest", "url": url, "insecure": insecure}
    if ok:
        assert isinstance(engine_from_config(config), OpaRestEngine)
    else:
        with pytest.raises(WorkspaceError) as e:
            engine_from_config(config)
        assert "\n" not in str(e.value)


def test_the_token_comes_from_promote_opa_token_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_OPA_TOKEN", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "never-sent")
    e = engine_from_config({"kind": "opa-rest", "url": "http://127.0.0.1:8181"})
    assert isinstance(e, OpaRestEngine) and e.token == "from-env"
    with pytest.raises(WorkspaceError) as err:
        engine_from_config(
            {
                "kind": "opa-rest",
                "url": "http://127.0.0.1:8181",
                "token_env": "AWS_SECRET_ACCESS_KEY",
            }
        )
    assert str(err.value) == (
        "engine.token_env is no longer read: delete it from the config and put the bearer"
        " token in PROMOTE_OPA_TOKEN"
    )
    monkeypatch.delenv("PROMOTE_OPA_TOKEN")
    e = engine_from_config({"kind": "opa-rest", "url": "http://127.0.0.1:8181"})
    assert isinstance(e, OpaRestEngine) and e.token is None


class _Redirect(http.server.BaseHTTPRequestHandler):
    """A fake OPA that redirects every request to `target`."""

    target = ""

    def _go(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(307)
        self.send_header("Location", type(self).target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _go

    def log_message(self, *args: object) -> None:
        pass


def test_redirects_are_not_followed(server: StandinServer, bundle: PolicyBundle) -> None:
    """The token goes to engine.url and nowhere else, even when told to go elsewhere."""
    handler = type("H", (_Redirect,), {"target": server.url})
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        before = len(server.requests())
        url = f"http://127.0.0.1:{fake.server_address[1]}"
        decision = decide(OpaRestEngine(url, TOKEN, 5), bundle, VECTORS[0]["input"])
        assert decision.allow is False
        assert any("HTTP 307" in r for r in decision.deny), decision.deny
        assert len(server.requests()) == before
    finally:
        fake.shutdown()
        fake.server_close()
        thread.join()


def _use_standin(flow: Flow, server: StandinServer) -> None:
    cfg = flow.root / "control/promote/config.json"
    doc = json.loads(cfg.read_bytes())
    doc["engine"] = {"kind": "opa-rest", "url": server.url, "timeout": 20}
    cfg.write_text(json.dumps(doc))
    server.load(dict(load_bundle(flow.root / "control/policy").files))


def _sent(server: StandinServer, since: int) -> list[dict[str, Any]]:
    return server.requests()[since:]


def test_promote_through_opa_rest(tmp_path: Path, server: StandinServer) -> None:
    """A real promotion decided by real OPA over REST records OPA's version."""
    flow = Flow.init(tmp_path / "ws", env={"PROMOTE_OPA_TOKEN": TOKEN})
    _use_standin(flow, server)
    since = len(server.requests())
    r = flow.release({"release/app.whl": b"wheel"})
    assert r.returncode == 0, r.stderr.decode()
    report = json.loads((flow.root / "execution/promote/report.json").read_bytes())
    assert report["decision"]["engine"] == "opa-rest 1.20.2"
    assert report["decision"]["allow"] is True
    sent = _sent(server, since)
    assert [(q["method"], q["path"].split("?")[0]) for q in sent] == [
        ("GET", "/v1/config"),
        ("GET", "/v1/policies"),
        ("POST", "/v1/data/promote/allow"),
        ("POST", "/v1/data/promote/deny"),
        ("GET", "/v1/policies"),
    ]
    assert all(q["authorization"] == f"Bearer {TOKEN}" for q in sent)


def test_dry_run_sends_nothing_before_evaluation(tmp_path: Path, server: StandinServer) -> None:
    """A dry run that stops before the policy contacts no one, token or not; one that
    reaches the policy asks it, as a real run would."""
    flow = Flow.init(tmp_path / "ws", env={"PROMOTE_OPA_TOKEN": TOKEN})
    _use_standin(flow, server)
    since = len(server.requests())
    (flow.root / "broken.json").write_text('{"schema": "promote-capsule/v1"')
    r = flow.run("promote", "--dry-run", "broken.json")
    assert r.returncode == 2, r.stderr.decode()
    assert _sent(server, since) == []
    digest, size = flow.put(b"wheel")
    cap = flow.capsule({"release/app.whl": digest}, flow.check([(digest, size)]))
    r = flow.run("promote", "--dry-run", cap)
    assert r.returncode in (0, 4), r.stderr.decode()
    sent = _sent(server, since)
    assert [q["path"].split("?")[0] for q in sent][:2] == ["/v1/config", "/v1/policies"]
    assert all(q["authorization"] == f"Bearer {TOKEN}" for q in sent)


def test_an_old_config_naming_token_env_is_one_line_exit_2(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    cfg = flow.root / "control/promote/config.json"
    doc = json.loads(cfg.read_bytes())
    doc["engine"] = {"kind": "opa-rest", "url": "http://127.0.0.1:9", "token_env": "X"}
    cfg.write_text(json.dumps(doc))
    (flow.root / "in.json").write_text("{}")
    r = flow.run("promote", "policy", "eval", "--input", "in.json")
    assert r.returncode == 2, r.stderr
    assert r.stderr.decode().splitlines() == [
        "promote: error: engine.token_env is no longer read: delete it from the config and"
        " put the bearer token in PROMOTE_OPA_TOKEN"
    ]
