"""Crashes: SIGKILL at every step boundary, and at random moments of a busy loop.

Invariant: a kill at any moment loses and corrupts nothing. Before the commit point
the ledger, pointers and view are exactly as they were; after it the promotion has
happened whole. Straight after the kill the view shows one whole ledger state (all
old or all new); after `promote recover` it shows the head, and the checker is clean
but for the stray temp of an interrupted put, which `cas gc` removes.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from reliability.checker import check, count
from reliability.scenario import Zygote, entries, prepare, real

STRAY = [("stray-temp", "tmp/*")]

#: step -> whether the promotion has happened once the process died there.
PROMOTE_STEPS = {
    # the gate stores four new objects (the policy bundle is the first promotion's):
    "put.temp-written:1": False,  # the capsule
    "put.renamed:2": False,  # the policy input
    "put.temp-written:3": False,  # the decision
    "promote.decision-stored": False,
    "put.temp-written:4": False,  # the new pointer state
    "put.renamed:4": False,
    "promote.state-stored": False,
    "commit.before": False,
    "commit.after": True,
    "commit.head-written": True,
    "view.building": True,
    "view.before-switch": True,
    "view.after-switch": True,
}
COPY_STEPS = {**PROMOTE_STEPS, "view.file-copied:2": True}
del COPY_STEPS["view.before-switch"], COPY_STEPS["view.after-switch"]

CASES = [("symlink", s) for s in PROMOTE_STEPS] + [("copy", s) for s in COPY_STEPS]


def _released(root: Path, cli: object) -> Path:
    """A workspace holding one promotion, and a capsule for a second that moves two
    paths and adds a third, so that old and new views differ everywhere."""
    cap = prepare(root, {"release/a": b"a1", "release/b": b"b1"}, name="first")
    r = cli("promote", cap, cwd=root)  # type: ignore[operator]
    assert r.returncode == 0, r.stderr
    return prepare(root, {"release/a": b"a2", "release/sub/c": b"c2"}, name="second")


@pytest.mark.parametrize(("mode", "step"), CASES, ids=[f"{m}-{s}" for m, s in CASES])
def test_kill_promote_at_every_step(make_ws, cli: Zygote, mode: str, step: str) -> None:
    """Invariant: kill promote at STEP, recover, and the promotion either never
    happened or happened whole; re-running the capsule then does the rest."""
    root = make_ws(mode)
    cap = _released(root, cli)
    # the installed script for one step, to prove the hook; forked CLIs for the rest
    run = real if step == "commit.before" else cli
    r = run("promote", cap, cwd=root, env={"CAS_CRASH_AT": step})
    assert r.returncode == -9, (r.returncode, r.stderr)
    count("crash", "cases")
    committed = PROMOTE_STEPS.get(step, COPY_STEPS.get(step))
    assert len(entries(root)) == (2 if committed else 1)
    check(root, cli, category="crash", view="any")  # all old or all new, before recovery
    rec = cli("promote", "recover", cwd=root)
    assert rec.returncode == 0, rec.stderr
    stray = STRAY if step.startswith("put.temp-written") else []
    check(root, cli, category="crash", expect=stray)
    again = cli("promote", cap, cwd=root)
    assert again.returncode == (5 if committed else 0), again.stderr
    check(root, cli, category="crash", expect=stray)
    assert cli("cas", "gc", "--grace", "0", cwd=root).returncode == 0
    report = check(root, cli, category="crash")
    assert report.head_seq == 2
    assert report.state["release/a"][0] != report.state["release/b"][0]


@pytest.mark.parametrize("step", ["put.temp-written", "put.renamed"])
def test_kill_cas_put(make_ws, cli: Zygote, step: str) -> None:
    """Invariant: a killed `cas put` leaves at most a stray temp; the object is then
    either absent or whole under its name, and the next put of it succeeds."""
    root = make_ws()
    src = root / "artifact"
    src.write_bytes(b"x" * 300_000)
    r = real("cas", "put", src, cwd=root, env={"CAS_CRASH_AT": step})
    assert r.returncode == -9
    count("crash", "cases")
    stray = STRAY if step == "put.temp-written" else []
    check(root, cli, category="crash", expect=stray)
    ok = real("cas", "put", src, cwd=root)
    assert ok.returncode == 0, ok.stderr
    digest = ok.stdout.split()[0].decode()
    check(root, cli, category="crash", expect=stray, acked=[digest])
    assert cli("cas", "gc", "--grace", "3600", cwd=root).returncode == 0
    check(root, cli, category="crash", acked=[digest])


def test_kill_recover_itself(make_ws, cli: Zygote) -> None:
    """Invariant: recovery is itself crash-safe: killing it and running it again
    converges on the head."""
    root = make_ws()
    cap = _released(root, cli)
    assert cli("promote", cap, cwd=root, env={"CAS_CRASH_AT": "commit.after"}).returncode == -9
    for step in ("view.building", "view.before-switch", "view.after-switch"):
        r = cli("promote", "recover", cwd=root, env={"CAS_CRASH_AT": step})
        assert r.returncode == -9, r.stderr
        count("crash", "cases")
        check(root, cli, category="crash", view="any")
    assert real("promote", "recover", cwd=root).returncode == 0
    assert check(root, cli, category="crash").head_seq == 2


@pytest.mark.parametrize(("mode", "kills"), [("symlink", 150), ("copy", 60)])
def test_random_kills_during_puts_and_promotions(
    make_ws, zygote: Zygote, tmp_path: Path, mode: str, kills: int
) -> None:
    """Invariant: SIGKILL at a random moment of a loop of puts and promotions, then
    recovery, leaves a consistent workspace, and no acknowledged put is lost."""
    rng = random.Random(f"kills-{mode}")
    cli = zygote.run
    root = make_ws(mode)
    acks = tmp_path / "acks"
    acks.touch()
    for i in range(kills):
        if i and i % 40 == 0:  # a fresh workspace now and then keeps each check small
            assert cli("cas", "gc", "--grace", "3600", cwd=root).returncode == 0
            check(root, cli, category="crash", acked=_acked(acks))
            root = make_ws(mode)
            acks.write_text("")
        spec = {"root": str(root), "seed": f"{mode}-{i}", "acks": str(acks)}
        delay = rng.uniform(0.0, 0.12)
        r = zygote.run_many([{"cwd": root, "loop": spec}], kill_after=[delay])[0]
        assert r.returncode == -9, r.stderr.decode()[-2000:]
        count("crash", "cases")
        check(root, cli, category="crash", view="any", acked=_acked(acks))
        rec = cli("promote", "recover", cwd=root)
        assert rec.returncode == 0, rec.stderr
        check(root, cli, category="crash", allow=STRAY, acked=_acked(acks))
    assert cli("cas", "gc", "--grace", "3600", cwd=root).returncode == 0
    check(root, cli, category="crash", acked=_acked(acks))


def _acked(path: Path) -> list[str]:
    return sorted(set(path.read_text().split()))
