"""`promote serve` as a real process: a real uvicorn on a loopback port, read by a
real HTTP client and by a real headless browser (Debian's chromium, driven by
Playwright), and the same application over a PostgreSQL ledger.

Screenshots: `PROMOTE_SCREENSHOTS=1 pytest tests/web/test_serve.py` writes the pages
the browser test visits into docs/screenshots/ (otherwise nothing is written there).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import blake3
import pytest
from helpers import Flow, run_cli
from web_site import Served, entry_doc, verify_problems

from promote.web.app import CSP

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fetch(url: str, method: str = "GET", host: str | None = None) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, method=method)
    if host is not None:
        req.add_header("Host", host)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.headers, e.read()


def test_a_real_server_read_only_with_its_headers(served: Served, site: Flow) -> None:
    assert served.url.startswith("http://127.0.0.1:")
    status, headers, body = fetch(served.url + "/")
    assert status == 200
    assert headers["Content-Security-Policy"] == CSP
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers.get("Server") is None  # no server banner
    assert b'href="/entries/3"' in body
    status, headers, body = fetch(served.url + "/api/entries/1")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body)["changes"] == entry_doc(site, 1)["changes"]
    for method in ("POST", "PUT", "DELETE"):
        status, headers, _ = fetch(served.url + "/", method=method)
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
    # bound to loopback: a page of another site rebinding its name here reads nothing
    assert fetch(served.url + "/api/timeline", host="attacker.example")[0] == 400
    capsule = entry_doc(site, 1)["capsule"]["digest"]
    status, headers, body = fetch(f"{served.url}/objects/{capsule}")
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "blake3:" + blake3.blake3(body).hexdigest() == capsule
    _, err = served.stop()
    assert b"Traceback" not in err


def test_objects_are_404_without_serve_objects(site: Flow) -> None:
    s = Served(site.root)
    try:
        capsule = entry_doc(site, 1)["capsule"]["digest"]
        assert fetch(f"{s.url}/objects/{capsule}")[0] == 404
        assert fetch(f"{s.url}/entries/1")[0] == 200
    finally:
        s.stop()


def _shot(page: Any, name: str) -> None:
    if os.environ.get("PROMOTE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_in_a_real_browser_timeline_entry_reasons_download(
    served: Served, site: Flow, tmp_path: Path
) -> None:
    """Chromium with JavaScript off: open the timeline, follow an entry, read its
    decision and reasons and its verified signers, download its capsule and its
    receipt (which `promote verify-receipt` accepts), search for a path with the form."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "needs Debian's chromium: bash .ci/system-packages.sh"
    doc = entry_doc(site, 2)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            java_script_enabled=False,
            accept_downloads=True,
            viewport={"width": 1280, "height": 720},
        )
        try:
            page = ctx.new_page()
            page.goto(served.url + "/")
            assert page.title() == "Timeline · promote serve"
            assert page.locator("td.seq").all_inner_texts() == ["3", "2", "1"]
            row = page.locator("table.timeline tbody tr").nth(1)
            assert "v1.1.0" in row.inner_text() and "release/app.txt" in row.inner_text()
            assert "checker demo-checker" in row.inner_text()
            assert "✓ verified" in row.inner_text()
            _shot(page, "timeline")

            page.locator("td.seq a", has_text="2").click()
            page.wait_for_url(served.url + "/entries/2")
            assert page.locator("h1").inner_text() == "Ledger entry 2"
            assert page.locator("#decision p.verdict").inner_text().startswith("allow by regorus")
            assert page.locator("#reasons li").all_inner_texts() == [
                "no deny reasons: the policy allowed it"
            ]
            decision = page.locator("#decision").inner_text()
            assert doc["policy"]["digest"][:19] in decision  # blake3: and 12 hex digits
            evidence = page.locator("#evidence").inner_text()
            assert "pass" in evidence and "unit" in evidence
            assert "demo-checker" in evidence and "✓ verified" in evidence
            assert "check-report/v1" in evidence and "roles met" in evidence
            assert "verification_summary/v1" in evidence and "PASSED" in evidence
            entry_signers = page.locator("#entry-signers").inner_text()
            assert "runner demo-runner" in entry_signers and "✓ verified" in entry_signers
            changes = page.locator("#changes").inner_text()
            assert "release/app.txt" in changes
            _shot(page, "entry")

            with page.expect_download() as info:
                page.locator("a#receipt").click()
            receipt = info.value
            assert receipt.suggested_filename == "receipt-2.json"
            offline = tmp_path / "offline"
            offline.mkdir()
            receipt.save_as(str(offline / "receipt.json"))
            shutil.copy(site.root / ".promote/keys/runner.pub", offline / "runner.pub")
            checked = run_cli(
                "promote", "verify-receipt", "receipt.json", "--key", "runner.pub", cwd=offline
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr

            with page.expect_download() as info:
                page.get_by_role("link", name="download capsule").click()
            download = info.value
            data = Path(download.path()).read_bytes()
            assert "blake3:" + blake3.blake3(data).hexdigest() == doc["capsule"]["digest"]
            assert download.suggested_filename == "blake3-" + doc["capsule"]["digest"][7:]
            assert json.loads(data)["meta"]["source_revision"] == "v1.1.0"

            page.fill("#q", "release/app.txt")
            page.locator("form.search button").click()
            page.wait_for_url(served.url + "/paths/release/app.txt")
            assert page.locator("td.seq").all_inner_texts() == ["2", "1"]
            _shot(page, "path")

            page.goto(served.url + "/verify")
            found = verify_problems(site)  # what `promote verify` says, the page says
            n = len(found)
            verdict = "clean" if not found else f"{n} problem{'' if n == 1 else 's'}"
            assert page.locator("#verdict").inner_text() == verdict
            assert "3 entries re-justified" in page.locator("#signatures").inner_text()
            _shot(page, "verify")
        finally:
            ctx.close()


def test_over_a_postgresql_ledger(tmp_path: Path, pg_url: str) -> None:
    """The same pages over PgLedger: one connection per server thread."""
    from promote_ws import make_machine
    from starlette.testclient import TestClient

    from promote.verify import open_ledger
    from promote.web.app import create_app
    from promote.web.data import Reader
    from promote.workspace import Workspace

    m = make_machine(tmp_path / "ws", pg_url)
    for i, data in enumerate([b"one", b"two"]):
        r = m.promote(m.capsule({"release/app.txt": data}, f"c{i}"))
        assert r.returncode == 0, r.stderr
    reader = Reader(Workspace.load(m.root), open_ledger)
    try:
        c = TestClient(create_app(reader))
        timeline = c.get("/api/timeline").json()
        assert [e["seq"] for e in timeline["entries"]] == [2, 1]
        entry = c.get("/api/entries/2").json()
        assert entry["changes"][0]["to"]["digest"] == "blake3:" + blake3.blake3(b"two").hexdigest()
        assert [e["seq"] for e in c.get("/api/paths/release/app.txt").json()["entries"]] == [2, 1]
        assert c.get("/api/verify").json()["problems"] == verify_problems(m)
        assert c.get("/entries/3").status_code == 404
    finally:
        reader.close()


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "[::1]:0", "localhost:0"])
def test_serves_on_each_loopback_form(site: Flow, bind: str) -> None:
    import subprocess

    from helpers import clean_env, script

    proc = subprocess.Popen(
        [script("promote"), "serve", "--bind", bind],
        cwd=site.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line and bind.startswith("[::1]"):
            pytest.skip("no IPv6 loopback here")
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        assert fetch(url + "api/timeline")[0] == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
