"""`promote log`, `promote show` and `promote status` on the real CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import blake3
import pytest
from helpers import Flow


def entry_hash(flow: Flow, seq: int) -> str:
    data = (flow.root / f"execution/ledger/entries/{seq:012d}.json").read_bytes()
    return "blake3:" + blake3.blake3(data).hexdigest()


def out(flow: Flow, *args: str) -> str:
    return flow.ok("promote", *args).stdout.decode()


def two_releases(flow: Flow) -> None:
    assert flow.release({"release/a": b"a1", "release/b": b"b1"}, "--builder", "ci").returncode == 0
    r = flow.release(
        {"release/a": b"a2"}, "--expect-current", "--builder", "ci", "--source-revision", "v2"
    )
    assert r.returncode == 0, r.stderr


def obj(flow: Flow, digest: str) -> Path:
    return flow.root / ".cas/objects/blake3" / digest[7:9] / digest[9:]


# -- log -----------------------------------------------------------------------------


def test_log_one_line_per_promotion_newest_first(flow: Flow) -> None:
    two_releases(flow)
    a2 = blake3.blake3(b"a2").hexdigest()[:12]
    lines = out(flow, "log").splitlines()
    assert lines == [
        f"2  {entry_hash(flow, 2)}  release/a -> blake3:{a2}  builder=ci source_revision=v2",
        f"1  {entry_hash(flow, 1)}  release/a -> blake3:{blake3.blake3(b'a1').hexdigest()[:12]},"
        f" release/b -> blake3:{blake3.blake3(b'b1').hexdigest()[:12]}  builder=ci",
    ]
    assert out(flow, "log", "--reverse").splitlines() == lines[::-1]
    assert out(flow, "log", "-n", "1").splitlines() == lines[:1]
    assert out(flow, "log") == "\n".join(lines) + "\n"  # stable: same bytes every time


def test_log_json(flow: Flow) -> None:
    two_releases(flow)
    records = json.loads(out(flow, "log", "--json", "--reverse"))
    assert [r["seq"] for r in records] == [1, 2]
    first = records[0]
    entry = json.loads((flow.root / "execution/ledger/entries/000000000001.json").read_bytes())
    assert first["entry"] == entry_hash(flow, 1)
    assert first["capsule"] == entry["capsule"]["digest"]
    assert first["changes"] == entry["changes"]
    assert first["meta"] == {"builder": "ci"}


def test_log_of_an_empty_ledger_is_empty(flow: Flow) -> None:
    assert out(flow, "log") == ""
    assert json.loads(out(flow, "log", "--json")) == []


def test_log_says_when_a_capsule_is_gone(flow: Flow) -> None:
    two_releases(flow)
    entry = json.loads((flow.root / "execution/ledger/entries/000000000002.json").read_bytes())
    obj(flow, entry["capsule"]["digest"]).unlink()
    lines = out(flow, "log").splitlines()
    assert lines[0].endswith("(capsule not in the store)")
    assert json.loads(out(flow, "log", "--json"))[0]["meta"] is None


def test_log_reports_a_broken_entry(flow: Flow) -> None:
    two_releases(flow)
    p = flow.root / "execution/ledger/entries/000000000001.json"
    os.chmod(p, 0o644)
    p.write_bytes(p.read_bytes().replace(b'"seq":1', b'"seq": 1'))
    r = flow.run("promote", "log")
    assert r.returncode == 3
    assert b"not canonical" in r.stderr and b"Traceback" not in r.stderr


# -- show ----------------------------------------------------------------------------


def test_show_entry_decision_and_evidence(flow: Flow) -> None:
    two_releases(flow)
    text = out(flow, "show", "2")
    entry = json.loads((flow.root / "execution/ledger/entries/000000000002.json").read_bytes())
    assert text.splitlines()[0] == f"entry     2  {entry_hash(flow, 2)}"
    assert f"prev      {entry_hash(flow, 1)}" in text
    assert f"release/a: {entry['changes'][0]['from']['digest']} ->" in text
    assert "  allow (regorus " in text
    assert f"  policy: {entry['policy']['digest']}" in text
    assert f"evidence  {entry['evidence'][0]['digest']}" in text  # the signed attestation
    assert "  attestation (application/vnd.in-toto+json)" in text
    assert "  source_revision: v2" in text
    assert out(flow, "show", "head") == text
    assert out(flow, "show", "-1") == out(flow, "show", "1")


def test_show_json(flow: Flow) -> None:
    two_releases(flow)
    doc = json.loads(out(flow, "show", "1", "--json"))
    entry = json.loads((flow.root / "execution/ledger/entries/000000000001.json").read_bytes())
    assert doc["seq"] == 1 and doc["entry"] == entry_hash(flow, 1)
    assert doc["document"] == entry
    assert doc["decision"]["ref"] == entry["decision"]
    assert doc["decision"]["document"]["allow"] is True
    assert doc["decision"]["document"]["deny"] == []
    assert [e["ref"] for e in doc["evidence"]] == entry["evidence"]
    assert doc["evidence"][0]["document"]["payloadType"] == "application/vnd.in-toto+json"
    assert doc["capsule"]["document"]["meta"] == {"builder": "ci"}
    assert doc["missing"] == []


@pytest.mark.parametrize("seq", ["0", "3", "-2", "nope"])
def test_show_no_such_entry(flow: Flow, seq: str) -> None:
    two_releases(flow)
    r = flow.run("promote", "show", seq)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count(b"\n") == 1


def test_show_a_missing_decision_exits_3_but_shows_the_rest(flow: Flow) -> None:
    two_releases(flow)
    entry = json.loads((flow.root / "execution/ledger/entries/000000000002.json").read_bytes())
    obj(flow, entry["decision"]["digest"]).unlink()
    r = flow.run("promote", "show", "2")
    assert r.returncode == 3
    text = r.stdout.decode()
    assert f"evidence  {entry['evidence'][0]['digest']}" in text
    assert f"missing   decision {entry['decision']['digest']}" in text
    doc = json.loads(flow.run("promote", "show", "2", "--json").stdout)
    assert doc["decision"]["document"] is None and len(doc["missing"]) == 1


# -- status --------------------------------------------------------------------------


def test_status_clean(flow: Flow) -> None:
    two_releases(flow)
    text = out(flow, "status")
    assert text.splitlines() == [
        f"head      entry 2  {entry_hash(flow, 2)}",
        f"state     {json.loads((flow.root / 'execution/ledger/HEAD').read_bytes())['state']['digest']}",
        "view      symlink, shows entry 2 (the head)",
        "clean: the view shows the head and nothing awaits recovery",
    ]
    doc = json.loads(out(flow, "status", "--json"))
    assert doc["clean"] is True
    assert doc["head"]["seq"] == 2 and doc["view"]["seq"] == 2


def test_status_of_a_fresh_workspace(flow: Flow) -> None:
    doc = json.loads(out(flow, "status", "--json"))
    assert doc["head"]["seq"] == 0 and doc["head"]["entry"] is None
    assert doc["view"]["seq"] == 0 and doc["clean"] is True
    assert out(flow, "status").startswith("head      (empty ledger)\n")


def test_status_shows_what_a_crash_left_and_recover_clears_it(flow: Flow) -> None:
    two_releases(flow)
    ledger = flow.root / "execution/ledger"
    head2 = (ledger / "HEAD").read_bytes()
    # a crash between the commit point and the HEAD update, and one before the link
    entry1 = json.loads((ledger / "entries/000000000001.json").read_bytes())
    (ledger / "HEAD").write_bytes(
        json.dumps(
            {"seq": 1, "entry": entry_hash(flow, 1), "state": entry1["state_after"]}
        ).encode()
    )
    (ledger / "entries/.entry-abc.tmp").write_bytes(b"half")
    # a view left on the previous generation, and a stray temp in the store
    gen1 = entry1["state_after"]["digest"][7:]
    current = flow.root / ".promote/current"
    current.unlink()
    current.symlink_to(f"generations/{gen1}")
    (flow.root / ".cas/tmp").mkdir(exist_ok=True)
    (flow.root / ".cas/tmp/put-crashed").write_bytes(b"x")

    doc = json.loads(out(flow, "status", "--json"))
    assert doc["clean"] is False
    assert doc["head"]["seq"] == 2  # readers roll HEAD forward
    assert doc["view"]["seq"] == 1
    assert any("view-stale" in p for p in doc["view"]["problems"])
    rec = "\n".join(doc["recovery"])
    assert ".entry-abc.tmp" in rec
    assert "ledger HEAD names entry 1, the ledger ends at 2" in rec
    assert "the view does not show the head" in rec
    assert doc["stray"] == ["put-crashed (cas gc removes it)"]
    text = out(flow, "status")
    assert "view      symlink, shows entry 1, not the head" in text
    assert "recover   interrupted entry temp .entry-abc.tmp" in text

    flow.ok("promote", "recover")
    (flow.root / ".cas/tmp/put-crashed").unlink()
    doc = json.loads(out(flow, "status", "--json"))
    assert doc["clean"] is True, doc
    assert (ledger / "HEAD").read_bytes() == head2


def test_status_in_copy_mode(copy_flow: Flow) -> None:
    flow = copy_flow
    two_releases(flow)
    assert "view      copy, shows entry 2 (the head)" in out(flow, "status")
    record = flow.root / ".promote/view.json"
    doc = json.loads(record.read_bytes())
    record.write_text(json.dumps({"pending": True, "state": doc["state"]}))
    f = flow.root / "release/b"
    os.chmod(f, 0o644)
    f.write_bytes(b"ad hoc")
    st = json.loads(out(flow, "status", "--json"))
    assert st["clean"] is False
    assert st["view"]["problems"][0].startswith("view-pending")
    assert any(p.startswith("view-modified: release/b") for p in st["view"]["problems"])


# -- the same on PostgreSQL ----------------------------------------------------------


def test_history_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    flow = Flow.init(tmp_path / "ws", env={"PROMOTE_LEDGER": pg_url})
    two_releases(flow)
    assert not (flow.root / "execution/ledger/entries/000000000001.json").exists()
    lines = out(flow, "log").splitlines()
    assert [line.split("  ")[0] for line in lines] == ["2", "1"]
    shown = json.loads(out(flow, "show", "2", "--json"))
    assert shown["entry"] == lines[0].split("  ")[1]
    assert shown["decision"]["document"]["allow"] is True
    st = json.loads(out(flow, "status", "--json"))
    assert st["head"]["seq"] == 2 and st["head"]["entry"] == shown["entry"]
    assert st["clean"] is True
