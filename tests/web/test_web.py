"""`promote serve`'s application through Starlette's TestClient: every route, as HTML
and as JSON, the security headers, and the validation of every parameter."""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import blake3
import pytest
from helpers import Flow, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from web_site import client_for, entry_doc, verify_problems

from promote.web.app import CSP

REPO = Path(__file__).resolve().parents[2]


def digest_of(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def entry_hash(flow: Flow, seq: int) -> str:
    return digest_of((flow.root / f"execution/ledger/entries/{seq:012d}.json").read_bytes())


def ok_json(client: Any, url: str) -> Any:
    r = client.get(url)
    assert r.status_code == 200, (url, r.text)
    assert r.headers["content-type"] == "application/json"
    return r.json()


def ok_html(client: Any, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, (url, r.text)
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    return str(r.text)


# -- the timeline --------------------------------------------------------------------


def test_timeline_newest_first_with_builder_revision_paths_signers(client: Any, site: Flow) -> None:
    data = ok_json(client, "/api/timeline")
    assert data["head"]["seq"] == 3
    assert [e["seq"] for e in data["entries"]] == [3, 2, 1]
    assert [e["entry"] for e in data["entries"]] == [entry_hash(site, n) for n in (3, 2, 1)]
    assert [e["builder"] for e in data["entries"]] == ["alice", "ci", "ci"]
    assert [e["source_revision"] for e in data["entries"]] == ["v1.2.0", "v1.1.0", "v1.0.0"]
    first = data["entries"][2]
    assert first["changes"] == entry_doc(site, 1)["changes"]
    for e in data["entries"]:  # the verified CHECK signers of each entry's attestations
        assert entry_doc(site, e["seq"]).get("signature") is not None
        assert [(s["role"], s["signer"], s["verified"]) for s in e["signers"]] == [
            ("checker", "demo-checker", True)
        ]
    assert (data["newer"], data["older"]) == (None, None)

    html = ok_html(client, "/")
    rows = re.findall(r'<td class="seq"><a href="/entries/(\d+)">', html)
    assert rows == ["3", "2", "1"]
    assert "v1.1.0" in html and "alice" in html
    assert 'href="/paths/release/lib/libx.so"' in html


def test_timeline_pages_by_seq(client: Any) -> None:
    page = ok_json(client, "/api/timeline?per=2")
    assert [e["seq"] for e in page["entries"]] == [3, 2]
    assert (page["from"], page["newer"], page["older"]) == (3, None, 1)
    page = ok_json(client, "/api/timeline?per=2&from=1")
    assert [e["seq"] for e in page["entries"]] == [1]
    assert (page["newer"], page["older"]) == (3, None)
    page = ok_json(client, "/api/timeline?from=2&per=1")
    assert [e["seq"] for e in page["entries"]] == [2]
    assert (page["newer"], page["older"]) == (3, 1)
    html = ok_html(client, "/?per=1&from=2")
    assert 'href="/?from=3&amp;per=1">' in html and 'href="/?from=1&amp;per=1">' in html


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=4", 404),
        ("from=0", 400),
        ("from=-1", 400),
        ("from=01", 400),
        ("from=x", 400),
        ("per=0", 400),
        ("per=201", 400),
        ("per=1e3", 400),
        ("per=1&per=2", 400),
    ],
)
def test_timeline_refuses_bad_paging(client: Any, query: str, status: int) -> None:
    for prefix, kind in (("/api/timeline", "application/json"), ("/", "text/html")):
        r = client.get(f"{prefix}?{query}")
        assert r.status_code == status, (prefix, query, r.text)
        assert r.headers["content-type"].startswith(kind)
        if kind == "application/json":
            assert r.json()["error"]["status"] == status


def test_an_empty_ledger(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    c = client_for(flow.root)
    data = ok_json(c, "/api/timeline")
    assert (data["entries"], data["head"]["seq"]) == ([], 0)
    assert "the ledger is empty" in ok_html(c, "/")
    assert c.get("/entries/1").status_code == 404
    assert c.get("/api/timeline?from=1").status_code == 404


# -- an entry ------------------------------------------------------------------------


def test_entry_changes_decision_policy_evidence(client: Any, site: Flow) -> None:
    doc = entry_doc(site, 2)
    data = ok_json(client, "/api/entries/2")
    assert data["entry"] == entry_hash(site, 2)
    assert data["prev"] == entry_hash(site, 1)
    assert data["changes"] == doc["changes"]
    assert data["changes"][0]["path"] == "release/app.txt"
    assert data["changes"][0]["to"]["digest"] == digest_of(b"app 1.1.0\n")
    assert data["capsule"]["ref"] == doc["capsule"]
    assert data["capsule"]["meta"] == {"builder": "ci", "source_revision": "v1.1.0"}
    assert data["decision"]["ref"] == doc["decision"]
    assert data["decision"]["allow"] is True
    assert data["decision"]["reasons"] == []
    assert data["decision"]["engine"]["name"] == "regorus"
    assert data["policy"] == doc["policy"]
    assert data["missing"] == []
    named = doc.get("evidence") or [doc["check_report"]]
    assert [e["ref"] for e in data["evidence"]] == named
    ev = data["evidence"][0]
    assert ev["kind"] in ("attestation", "check-report")
    assert ev["status"] == "pass"
    assert [c["name"] for c in ev["checks"]] == ["unit"]
    if ev["kind"] == "attestation":
        assert ev["predicate_type"].endswith("/check-report/v1")
        assert [(s["signer"], s["verified"]) for s in ev["signers"]] == [("demo-checker", True)]
        assert ev["roles"] == ["checker"] and ev["verify_problem"] is None
    runner = data["signers"]
    assert [(s["role"], s["signer"], s["verified"]) for s in runner] == [
        ("runner", "demo-runner", True)
    ]
    assert runner[0]["keyid"] == doc["signature"]["keyid"]
    assert data["verified"]["trust"] == entry_doc(site, 1)["trust"]
    vsa = data["verified"]["vsa"]
    assert (vsa["verified"], vsa["problem"], vsa["result"]) == (True, None, "PASSED")
    assert vsa["predicate_type"] == "https://slsa.dev/verification_summary/v1"
    assert vsa["resource"] == "promote:entry/2"

    html = ok_html(client, "/entries/2")
    assert "<h1>Ledger entry 2</h1>" in html
    assert data["entry"] in html and doc["policy"]["digest"] in html
    assert 'class="verdict allow"' in html
    assert "no deny reasons: the policy allowed it" in html
    assert "demo-runner" in html and "demo-checker" in html and "✓ verified" in html
    assert "verification_summary/v1" in html and "PASSED" in html
    assert 'href="/paths/release/app.txt"' in html
    assert 'href="/entries/1"' in html and 'href="/entries/3"' in html
    assert "/objects/" not in html  # no downloads without --serve-objects
    assert "--serve-objects" in html


def test_verify_page_shows_an_unjustified_entry(tmp_path: Path) -> None:
    """The VSA gone from the store: re-justification reports the entry, and so does the
    page."""
    flow = Flow.init(tmp_path / "ws")
    assert flow.release({"release/a": b"a"}).returncode == 0
    hexd = entry_doc(flow, 1)["vsa"]["digest"][7:]
    (flow.root / ".cas/objects/blake3" / hexd[:2] / hexd[2:]).unlink()
    data = ok_json(client_for(flow.root), "/api/verify")
    sig = data["signatures"]
    assert sig["clean"] is False, data["problems"]
    assert [p["location"] for p in sig["problems"]] == ["ledger entry 1"]
    html = ok_html(client_for(flow.root), "/verify")
    assert "1 entry not justified" in html and "ledger entry 1" in html


def test_signatures_not_verified_under_other_trust_roots(site: Flow) -> None:
    """Against trust roots that do not list the keys, nothing verifies, and the view
    says so (the runner, each attestation, the VSA), never raising."""
    from promote.attest.trust import ROLES, TrustRoots
    from promote.ledger.entry import parse_entry
    from promote.verify import open_ledger
    from promote.web import signers as mod
    from promote.workspace import Workspace

    ws = Workspace.load(site.root)
    entry = parse_entry(open_ledger(ws).read(2))
    nobody = TrustRoots((), {r: 1 for r in ROLES})
    [ref] = entry.evidence
    got = mod._attestation(ws.store, ref, nobody)
    assert got["roles"] == [] and got["problem"]
    assert [s["verified"] for s in got["signers"]] == [False]
    assert mod.check_signers({"attestations": [got]}) == []


def test_entry_shows_the_reasons_a_decision_records(tmp_path: Path) -> None:
    """Whatever a decision records (deny reasons, an engine), the page shows; a field
    it lacks is shown as absent, never an error."""
    from promote.canonical import canonical
    from promote.ledger.entry import Head, build_entry
    from promote.ledger.files import FileLedger
    from promote.model import Change, State
    from promote.workspace import Workspace

    flow = Flow.init(tmp_path / "ws")
    ws = Workspace.load(flow.root)
    store = ws.store
    art = store.put_bytes(b"x")
    decision = store.put_bytes(
        canonical({"allow": False, "deny": ["<b>no</b> CHECK covers release/x"], "extra": 1})
    )
    capsule = store.put_bytes(canonical({"meta": {"builder": "<script>"}, "new": [1]}))
    odd = store.put_bytes(b"not json at all")
    state = State().apply([Change("release/x", None, art)])
    store.put_bytes(state.encode())
    entry = build_entry(
        Head.genesis(),
        capsule=capsule,
        check_report=odd,
        decision=decision,
        policy=odd,
        state_after=state.ref(),
        changes=[Change("release/x", None, art)],
    )
    FileLedger(ws.ledger_dir, store).commit(Head.genesis(), entry, state)
    c = client_for(flow.root)
    data = ok_json(c, "/api/entries/1")
    assert data["decision"]["allow"] is False
    assert data["decision"]["reasons"] == ["<b>no</b> CHECK covers release/x"]
    assert data["decision"]["engine"] is None
    assert data["evidence"][0]["kind"] == "missing"  # not JSON: unreadable as a document
    html = ok_html(c, "/entries/1")
    assert "<li>&lt;b&gt;no&lt;/b&gt; CHECK covers release/x</li>" in html  # escaped
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'class="verdict deny"' in html
    assert "&lt;script&gt;" in ok_html(c, "/")


def test_entry_with_documents_gone_from_the_store(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    assert flow.release({"release/a": b"a"}, "--builder", "ci").returncode == 0
    doc = entry_doc(flow, 1)
    for key in ("capsule", "decision"):
        hexd = doc[key]["digest"][7:]
        (flow.root / ".cas/objects/blake3" / hexd[:2] / hexd[2:]).unlink()
    c = client_for(flow.root)
    data = ok_json(c, "/api/entries/1")
    assert len(data["missing"]) == 2
    assert data["capsule"]["meta"] is None and data["decision"]["allow"] is None
    html = ok_html(c, "/entries/1")
    assert "Not in the store" in html and "unknown (decision not in the store)" in html
    assert "capsule not in the store" in ok_html(c, "/")
    assert ok_json(c, "/api/timeline")["entries"][0]["meta"] is None


@pytest.mark.parametrize(
    ("seq", "status"),
    [
        ("4", 404),
        ("99999999999", 404),
        ("0", 400),
        ("-1", 400),
        ("01", 400),
        ("x", 400),
        ("1.0", 400),
        ("head", 400),
        ("9" * 40, 400),
    ],
)
def test_entry_refuses_bad_numbers(client: Any, seq: str, status: int) -> None:
    assert client.get(f"/entries/{seq}").status_code == status
    r = client.get(f"/api/entries/{seq}")
    assert r.status_code == status
    assert r.json()["error"]["status"] == status


# -- a path ----------------------------------------------------------------------------


def test_path_history(client: Any, site: Flow) -> None:
    data = ok_json(client, "/api/paths/release/app.txt")
    assert [e["seq"] for e in data["entries"]] == [2, 1]
    assert data["count"] == 2
    assert data["current"]["digest"] == digest_of(b"app 1.1.0\n")
    assert [e["change"]["to"]["digest"] for e in data["entries"]] == [
        digest_of(b"app 1.1.0\n"),
        digest_of(b"app 1.0.0\n"),
    ]
    page = ok_json(client, "/api/paths/release/app.txt?per=1")
    assert ([e["seq"] for e in page["entries"]], page["older"]) == ([2], 1)
    page = ok_json(client, "/api/paths/release/app.txt?from=1")
    assert [e["seq"] for e in page["entries"]] == [1]
    html = ok_html(client, "/paths/release/app.txt")
    assert "History of <code>release/app.txt</code>" in html
    assert re.findall(r'<td class="seq"><a href="/entries/(\d+)">', html) == ["2", "1"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("release/nothing", 404),
        ("release/app.txt/", 400),
        ("release//app.txt", 400),
        ("release/%2E/app.txt", 400),  # (a client resolves a bare "." itself)
        ("release/%2E%2E/x", 400),
        ("release/a%00b", 400),
        ("release/a%5Cb", 400),
        ("a" * 5000, 400),
    ],
)
def test_path_refuses_bad_and_unknown_paths(client: Any, path: str, status: int) -> None:
    for prefix in ("/paths/", "/api/paths/"):
        r = client.get(prefix + path)
        assert r.status_code == status, (prefix + path, r.text)


# -- search ------------------------------------------------------------------------------


def test_search_by_digest(client: Any, site: Flow) -> None:
    app2 = digest_of(b"app 1.1.0\n")
    data = ok_json(client, f"/api/search?q={app2}")
    assert data["kind"] == "digest" and data["in_store"] is True
    assert [(h["seq"], h["roles"]) for h in data["entries"]] == [
        (2, ["new content of release/app.txt"])
    ]
    # the same digest without its algorithm
    assert ok_json(client, f"/api/search?q={app2[7:]}")["entries"] == data["entries"]
    app1 = digest_of(b"app 1.0.0\n")
    hits = ok_json(client, f"/api/search?q={app1}")["entries"]
    assert [(h["seq"], h["roles"]) for h in hits] == [
        (2, ["old content of release/app.txt"]),
        (1, ["new content of release/app.txt"]),
    ]
    capsule = entry_doc(site, 3)["capsule"]["digest"]
    hits = ok_json(client, f"/api/search?q={capsule}")["entries"]
    assert [(h["seq"], h["roles"]) for h in hits] == [(3, ["capsule"])]
    # an entry's hash goes straight to the entry
    r = client.get(f"/search?q={entry_hash(site, 1)}", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/entries/1")
    nowhere = digest_of(b"in no ledger")
    data = ok_json(client, f"/api/search?q={nowhere}")
    assert (data["entries"], data["in_store"]) == ([], False)
    assert "No ledger entry names it" in ok_html(client, f"/search?q={nowhere}")


def test_search_by_path(client: Any) -> None:
    data = ok_json(client, "/api/search?q=release")
    assert data["paths"] == ["release/app.txt", "release/docs/README", "release/lib/libx.so"]
    assert ok_json(client, "/api/search?q=release/lib/")["paths"] == ["release/lib/libx.so"]
    r = client.get("/search?q=release/app.txt", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/paths/release/app.txt")
    html = ok_html(client, "/search?q=release/docs")
    assert 'href="/paths/release/docs/README"' in html
    assert ok_json(client, "/api/search?q=elsewhere")["paths"] == []
    assert "Search for a digest" in ok_html(client, "/search")


@pytest.mark.parametrize("q", ["blake3:zz", "blake3:" + "0" * 63, "/etc/passwd", "a/../b", " "])
def test_search_refuses_what_is_neither(client: Any, q: str) -> None:
    r = client.get("/api/search", params={"q": q})
    assert r.status_code == 400
    if q.strip():
        assert client.get("/search", params={"q": q}).status_code == 400


# -- verification ------------------------------------------------------------------------


def test_verify_as_promote_verify_then_cached_then_damage_found_on_recheck(
    tmp_path: Path,
) -> None:
    flow = Flow.init(tmp_path / "ws")
    assert flow.release({"release/a": b"a"}).returncode == 0
    c = client_for(flow.root)
    first = ok_json(c, "/api/verify")
    assert first["problems"] == verify_problems(flow)
    assert first["clean"] is (first["problems"] == []) and first["cached"] is False
    assert first["head"]["seq"] == 1
    assert ok_json(c, "/api/verify")["cached"] is True
    sig = first["signatures"]
    assert sig["entries"] == 1 and "signatures" in first["checks"]
    assert sig["problems"] == [
        p for p in first["problems"] if p["kind"] in ("unjustified", "unsigned")
    ]
    assert sig["clean"] is (sig["problems"] == [])
    assert ("1 entry re-justified" if sig["clean"] else "not justified") in ok_html(c, "/verify")
    verdict = "clean" if first["clean"] else f"{len(first['problems'])} problem"
    assert f'id="verdict">{verdict}' in ok_html(c, "/verify")
    # damage an object the ledger names: the cache (same head) does not see it ...
    hexd = entry_doc(flow, 1)["decision"]["digest"][7:]
    obj = flow.root / ".cas/objects/blake3" / hexd[:2] / hexd[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"damaged")
    assert ok_json(c, "/api/verify")["problems"] == first["problems"]
    # ... a recheck does
    again = ok_json(c, "/api/verify?recheck=1")
    assert again["clean"] is False and again["cached"] is False
    assert any(p["digest"] == f"blake3:{hexd}" for p in again["problems"])
    assert again["problems"] == verify_problems(flow)
    assert c.get("/api/verify?recheck=yes").status_code == 400


# -- objects ---------------------------------------------------------------------------


def test_objects_only_with_serve_objects(client: Any, objects_client: Any, site: Flow) -> None:
    capsule = entry_doc(site, 1)["capsule"]["digest"]
    r = client.get(f"/objects/{capsule}")
    assert r.status_code == 404
    r = objects_client.get(f"/objects/{capsule}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="blake3-{capsule[7:]}"'
    assert digest_of(r.content) == capsule
    assert json.loads(r.content)["meta"]["source_revision"] == "v1.0.0"
    head = objects_client.head(f"/objects/{capsule}")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(r.content))
    assert objects_client.get(f"/objects/{digest_of(b'absent')}").status_code == 404
    for bad in ("blake3:xyz", "sha256:" + "0" * 64, "%2E%2E", "blake3:" + "A" * 64):
        assert objects_client.get(f"/objects/{bad}").status_code in (400, 404)
    assert objects_client.get("/objects/blake3:xyz").status_code == 400
    html = objects_client.get("/entries/1").text
    assert f'href="/objects/{capsule}" download>download capsule</a>' in html


def test_a_corrupt_object_is_not_served_whole(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    assert flow.release({"release/a": b"a" * 100_000}).returncode == 0
    digest = digest_of(b"a" * 100_000)
    obj = flow.root / ".cas/objects/blake3" / digest[7:9] / digest[9:]
    obj.chmod(0o644)
    obj.write_bytes(b"b" * 100_000)
    c = client_for(flow.root, serve_objects=True)
    r = c.get(f"/objects/{digest}")
    assert r.content != b"b" * 100_000  # the stream stops before the last chunk


# -- security ----------------------------------------------------------------------------

ROUTES = [
    "/",
    "/entries/1",
    "/paths/release/app.txt",
    "/verify",
    "/search?q=release",
    "/static/style.css",
    "/robots.txt",
    "/api/openapi.json",
    "/api/timeline",
    "/api/entries/1",
    "/api/paths/release/app.txt",
    "/api/verify",
    "/api/search?q=release",
    "/entries/2/receipt",
    "/api/entries/2/receipt",
    "/entries/99",
    "/nowhere",
]


@pytest.mark.parametrize("url", ROUTES)
def test_every_response_has_the_security_headers(objects_client: Any, url: str) -> None:
    r = objects_client.get(url)
    assert r.status_code in (200, 404)
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    kind = r.headers["content-type"]
    assert kind in (
        "text/html; charset=utf-8",
        "application/json",
        "text/css; charset=utf-8",
        "text/plain; charset=utf-8",
    )
    if url.startswith("/api/"):
        assert kind == "application/json"


def test_the_csp_is_the_strict_one() -> None:
    assert CSP == (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    )


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("url", ["/", "/api/timeline", "/objects/x", "/nowhere"])
def test_read_only_every_other_method_is_405(objects_client: Any, method: str, url: str) -> None:
    r = objects_client.request(method, url)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-security-policy"] == CSP


def test_pages_have_no_script_and_no_inline_style(objects_client: Any) -> None:
    for url in ("/", "/entries/2", "/paths/release/app.txt", "/verify", "/search?q=release"):
        html = objects_client.get(url).text
        assert "<script" not in html.lower()
        assert "style=" not in html.lower() and "<style" not in html.lower()


def test_host_header_checked_when_bound_to_loopback(site: Flow) -> None:
    c = client_for(site.root, hosts=["127.0.0.1", "localhost", "::1"])
    assert c.get("http://127.0.0.1:8080/").status_code == 200
    assert c.get("http://localhost/api/timeline").status_code == 200
    assert c.get("http://[::1]:8080/").status_code == 200
    r = c.get("/", headers={"host": "evil.example:8080"})
    assert r.status_code == 400
    assert r.headers["content-security-policy"] == CSP


_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=80
) | st.sampled_from(
    [
        "",
        "0",
        "-1",
        "01",
        "1",
        "3",
        "4",
        "blake3:",
        "blake3:" + "0" * 64,
        "release/app.txt",
        "../x",
        "release/../x",
        "/",
        "%00",
        "%2F",
        "\\",
        "..",
        " ",
        "head",
        "99999999999999999999",
    ]
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    value=_TEXT,
    route=st.sampled_from(
        [
            "/entries/{}",
            "/api/entries/{}",
            "/entries/{}/receipt",
            "/paths/{}",
            "/api/paths/{}",
            "/objects/{}",
            "/?from={}",
            "/api/timeline?per={}",
            "/search?q={}",
            "/api/search?q={}",
            "/api/verify?recheck={}",
            "/paths/release/app.txt?from={}",
        ]
    ),
)
def test_fuzzed_parameters_never_500(objects_client: Any, value: str, route: str) -> None:
    quoted = urllib.parse.quote(
        value, safe="/" if route.startswith(("/paths", "/api/paths")) else ""
    )
    r = objects_client.get(route.format(quoted), follow_redirects=False)
    assert r.status_code in (200, 303, 400, 404), (route, value, r.status_code, r.text[:200])
    assert "Traceback" not in r.text


@pytest.mark.parametrize("route", ["/entries/1/", "/api/entries/1/", "/search/", "/api/timeline/"])
def test_a_trailing_slash_is_not_found_not_redirected(client: Any, route: str) -> None:
    r = client.get(route, follow_redirects=False)
    assert r.status_code == 404, (route, r.status_code)


def test_an_unexpected_error_is_a_bare_500(site: Flow, caplog: pytest.LogCaptureFixture) -> None:
    from starlette.testclient import TestClient

    from promote.verify import open_ledger
    from promote.web.app import create_app
    from promote.web.data import Reader
    from promote.workspace import Workspace

    reader = Reader(Workspace.load(site.root), open_ledger)

    def broken(*_: object) -> None:
        raise RuntimeError("secret detail")

    reader.timeline = broken  # type: ignore[method-assign]
    c = TestClient(create_app(reader), raise_server_exceptions=False)
    r = c.get("/")
    assert (r.status_code, r.text) == (500, "internal error\n")
    assert r.headers["content-security-policy"] == CSP
    assert "secret detail" in caplog.text  # logged, not shown


# -- the API's description -----------------------------------------------------------------


def test_openapi_served_and_checked_in_current(client: Any) -> None:
    from promote.web.openapi import render

    served = ok_json(client, "/api/openapi.json")
    checked_in = REPO / "docs" / "web-openapi.json"
    if checked_in.read_text(encoding="utf-8") != render():
        pytest.fail("docs/web-openapi.json is stale: run `make docs`", pytrace=False)
    assert served == json.loads(render())
    assert served["openapi"].startswith("3.1")


def test_openapi_describes_every_api_route(client: Any, site: Flow) -> None:
    """Every route the app answers under /api/ (and /objects/) is in the document, and
    each JSON answer has the fields its schema requires."""
    from promote.web.openapi import openapi

    doc = openapi()
    schemas = doc["components"]["schemas"]
    samples = {
        "/api/timeline": ("/api/timeline", "Timeline"),
        "/api/entries/{seq}": ("/api/entries/2", "Entry"),
        "/api/paths/{path}": ("/api/paths/release/app.txt", "PathHistory"),
        "/api/verify": ("/api/verify", "Verification"),
        "/api/search": ("/api/search?q=release", "Search"),
    }
    assert set(doc["paths"]) == {*samples, "/objects/{digest}", "/api/entries/{seq}/receipt"}
    for path, (url, schema) in samples.items():
        data = ok_json(client, url)
        assert set(schemas[schema]["required"]) <= set(data), path


# -- receipts ------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_receipt_download_is_what_promote_receipt_writes_and_verifies(
    client: Any, site: Flow, tmp_path: Path, prefix: str
) -> None:
    seq = entry_doc(site, 3)
    assert seq.get("vsa") is not None
    r = client.get(f"{prefix}/entries/3/receipt")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["content-disposition"] == 'attachment; filename="receipt-3.json"'
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-content-type-options"] == "nosniff"
    out = tmp_path / "cli.json"
    assert run_cli("promote", "receipt", "3", "-o", str(out), cwd=site.root).returncode == 0
    assert r.content == out.read_bytes()
    (tmp_path / "receipt.json").write_bytes(r.content)
    key = site.root / ".promote/keys/runner.pub"
    v = run_cli("promote", "verify-receipt", "receipt.json", "--key", str(key), cwd=tmp_path)
    assert v.returncode == 0, v.stdout + v.stderr
    assert ok_json(client, "/api/entries/3")["receipt"] == "/entries/3/receipt"
    assert 'href="/entries/3/receipt"' in ok_html(client, "/entries/3")


@pytest.mark.parametrize(
    ("url", "status"),
    [("/entries/0/receipt", 400), ("/entries/x/receipt", 400), ("/api/entries/99/receipt", 404)],
)
def test_receipt_refuses_bad_and_unknown_entries(client: Any, url: str, status: int) -> None:
    r = client.get(url)
    assert r.status_code == status
    assert "Traceback" not in r.text


# -- the command ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "message"),
    [
        ("0.0.0.0:0", "not a loopback address; add --allow-remote"),
        ("192.0.2.1:8080", "not a loopback address"),
        ("example.com:8080", "not a loopback address"),
        ("127.0.0.1", "want HOST:PORT"),
        ("127.0.0.1:99999", "want HOST:PORT"),
        (":8080", "want HOST:PORT"),
    ],
)
def test_serve_refuses_a_bind_it_should_not(site: Flow, bind: str, message: str) -> None:
    r = run_cli("promote", "serve", "--bind", bind, cwd=site.root)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.decode()
    assert r.stderr.decode().startswith("promote: error: ")


def test_serve_is_in_the_command_list() -> None:
    r = run_cli("promote", "serve", "--help", cwd=REPO)
    assert r.returncode == 0
    for option in ("--bind", "--allow-remote", "--serve-objects", "127.0.0.1:8080"):
        assert option in r.stdout.decode()


def test_serve_without_the_web_extra_says_how_to_install_it(site: Flow, tmp_path: Path) -> None:
    """The stack missing (a `uvicorn` that cannot be imported stands in for it): one
    line naming the extra, exit 2."""
    shadow = tmp_path / "shadow" / "uvicorn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ModuleNotFoundError('no uvicorn', name='uvicorn')\n")
    r = run_cli("promote", "serve", cwd=site.root, env={"PYTHONPATH": str(shadow.parent)})
    assert r.returncode == 2
    assert r.stderr.decode() == (
        "promote: error: promote serve needs the web extra (uvicorn is missing):"
        " pip install 'cas-promote[web]'\n"
    )
