"""`cas gc`: what it keeps, what it removes, and the race with a concurrent promotion.

Invariant: gc never removes an object the ledger names (directly, or through a
decision's policy bundle and input, or a state), a young object, or a pinned one;
it removes unreferenced old objects, stray temps and old view generations; and a
promotion racing gc either commits with every object it names present, or fails
cleanly, so `promote verify` passes afterwards.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from reliability.checker import _named_refs, _object, check, count, replay
from reliability.scenario import Zygote, prepare, put

HOUR = 3600


def _age(root: Path, seconds: float) -> None:
    """Make every object look `seconds` old."""
    then = time.time() - seconds
    for p in (root / ".cas/objects").rglob("*"):
        if p.is_file():
            os.utime(p, (then, then))


def test_gc_keeps_roots_and_removes_garbage(make_ws, cli: Zygote) -> None:
    root = make_ws()
    for n in range(3):
        cap = prepare(
            root, {"release/a": f"a{n}".encode(), "release/b": f"b{n}".encode()}, name=f"p{n}"
        )
        assert cli("promote", cap, cwd=root).returncode == 0
    garbage = [put(root, f"garbage {n}".encode()) for n in range(4)]
    pinned = put(root, b"pinned by file")
    flagged = put(root, b"pinned by flag")
    (root / ".cas/pins").write_text(f"# kept for the auditors\n{pinned.digest}\n")
    _age(root, 2 * HOUR)
    young = put(root, b"young")
    # debris: a dead writer's temp, a live writer's temp, an old generation
    (root / ".cas/tmp/put-dead").write_bytes(b"half")
    live = root / ".cas/tmp/put-live"
    live.write_bytes(b"in flight")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    gens = sorted(p.name for p in (root / ".promote/generations").iterdir())
    assert len(gens) >= 3
    try:
        dry = cli("cas", "gc", "--dry-run", "--json", "--pin", str(flagged.digest), cwd=root)
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert sorted(r["digest"] for r in plan["removed"]) == sorted(
            str(g.digest) for g in garbage
        )
        assert plan["temps"] == ["tmp/put-dead"]
        assert len(plan["generations"]) == len(gens) - 1
        assert all(_object(root / ".cas", str(g.digest)).exists() for g in garbage)  # dry
        r = cli("cas", "gc", "--pin", str(flagged.digest), cwd=root)
        assert r.returncode == 0, r.stderr
        count("gc", "cases")
    finally:
        os.close(fd)
    assert not any(_object(root / ".cas", str(g.digest)).exists() for g in garbage)
    for kept in (pinned, flagged, young):
        assert _object(root / ".cas", str(kept.digest)).exists()
    assert live.exists() and not (root / ".cas/tmp/put-dead").exists()
    assert len(list((root / ".promote/generations").iterdir())) == 1
    entries, _ = replay(root)
    named = _named_refs(root / ".cas", entries)
    assert any("decision input" in w for w, _ in named)
    check(root, cli, category="gc", allow=[("stray-temp", "tmp/put-live")])


def test_gc_refuses_without_a_whole_ledger(make_ws, cli: Zygote) -> None:
    """A ledger it cannot read: gc refuses rather than guess roots. (A store with no
    workspace at all is collected by its pins: tests/store/test_gc_standalone.py.)"""
    root = make_ws()
    cap = prepare(root, {"release/a": b"1"})
    assert cli("promote", cap, cwd=root).returncode == 0
    entry = json.loads((root / "execution/ledger/entries/000000000001.json").read_bytes())
    decision = _object(root / ".cas", entry["decision"]["digest"])
    os.rename(decision, root / "decision.bak")
    _age(root, 2 * HOUR)
    before = sorted(p.name for p in (root / ".cas/objects").rglob("*"))
    r = cli("cas", "gc", "--grace", "0", cwd=root)
    count("gc", "cases")
    assert r.returncode == 3 and b"refuses" in r.stderr, r.stderr
    assert sorted(p.name for p in (root / ".cas/objects").rglob("*")) == before
    os.rename(root / "decision.bak", decision)
    check(root, cli, category="gc")


def test_gc_races_promotions(make_ws, zygote: Zygote) -> None:
    """Invariant: `cas gc --grace 0` running at the same moment as a promotion never
    leaves the ledger naming a missing object: the promotion commits whole, or fails
    (exit 3: its artifact was collected before it began), and verify passes."""
    root = make_ws()
    outcomes = {0: 0, 3: 0}
    for n in range(30):
        cap = prepare(root, {"release/a": f"race {n}".encode(), "release/b": f"b {n}".encode()})
        results = zygote.run_many(
            [
                {"argv": [cap], "cwd": root},
                {"prog": "cas", "argv": ["gc", "--grace", "0"], "cwd": root},
            ]
        )
        promote_rc, gc_rc = (r.returncode for r in results)
        assert gc_rc == 0, results[1].stderr
        assert promote_rc in (0, 3), results[0].stderr
        outcomes[promote_rc] += 1
        count("gc", "cases")
        check(root, zygote.run, category="gc")
    assert outcomes[0] > 0
