"""Concurrency: racing promoters, racing writers, fsck during writes, dead lock holders.

Every process here is a real OS process running the real CLI code.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import blake3
from helpers import clean_env
from reliability.checker import check, count, replay
from reliability.scenario import HERE, Zygote, prepare, real

WRITERS = 8


def test_eight_promoters_race_from_one_head(make_ws, zygote: Zygote) -> None:
    """Invariant: of 8 promotions built against the same head, exactly one commits and
    the other 7 exit 5 (conflict); over 50 rounds the ledger stays one unbroken chain
    of 50 entries and the view shows the winner of the last round."""
    root = make_ws()
    rounds = 50
    for rnd in range(rounds):
        caps = [
            prepare(root, {"release/app": f"round {rnd} writer {w}".encode()}, name=f"c{w}")
            for w in range(WRITERS)
        ]
        results = zygote.run_many([{"argv": [c], "cwd": root} for c in caps])
        codes = sorted(r.returncode for r in results)
        assert codes == [0] + [5] * (WRITERS - 1), [(r.returncode, r.stderr) for r in results]
        count("concurrency", "cases")
        if rnd % 10 == 9:
            check(root, zygote.run, category="concurrency")
    entries, _ = replay(root)
    assert len(entries) == rounds
    winner = [json.loads(c.read_bytes()) for c in caps]
    shown = (root / "release/app").read_bytes()
    assert any(shown == f"round {rounds - 1} writer {w}".encode() for w in range(WRITERS))
    assert winner


def test_eight_writers_put_overlapping_content(make_ws, zygote: Zygote) -> None:
    """Invariant: 8 concurrent `cas put`s of overlapping content all succeed (dedup is
    not an error), print the right digest for every file, and leave every object
    intact under its own name."""
    rng = random.Random("overlap")
    root = make_ws()
    contents = [rng.randbytes(n) for n in (0, 1, 100, 4096, 70_000, 1 << 20, 3 << 20)]
    contents += [f"small {i}".encode() for i in range(8)]
    srcs = []
    for i, data in enumerate(contents):
        p = root / f"src{i}"
        p.write_bytes(data)
        srcs.append(p)
    want = {
        str(p): "blake3:" + blake3.blake3(d).hexdigest()
        for p, d in zip(srcs, contents, strict=True)
    }
    for rnd in range(8):
        jobs = []
        for _ in range(WRITERS):
            pick = rng.sample(srcs, rng.randint(1, 6))
            jobs.append({"prog": "cas", "argv": ["put", *pick], "cwd": root})
        for r in zygote.run_many(jobs):
            assert r.returncode == 0, r.stderr
            for line in r.stdout.decode().splitlines():
                digest, _size, path = line.split("  ")
                assert want[path] == digest
        count("concurrency", "cases")
        check(root, zygote.run, category="concurrency", acked=want.values() if rnd > 6 else ())
    # the installed script too, 8 at once, each file alone (no batching)
    procs = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "cas"), "put", str(srcs[i % len(srcs)])],
            cwd=root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(WRITERS)
    ]
    for p in procs:
        _out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    count("concurrency", "cases")
    check(root, zygote.run, category="concurrency")


def test_fsck_during_writes_reports_no_false_damage(make_ws, zygote: Zygote, tmp_path) -> None:
    """Invariant: `cas fsck` run again and again while 3 processes put and promote
    never reports a problem: live temp files, half-switched views and fresh ledger
    entries are not damage."""
    root = make_ws()
    acks = tmp_path / "acks"
    acks.touch()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "zygote.py"),
                "--loop",
                json.dumps({"root": str(root), "seed": f"w{w}", "acks": str(acks), "steps": 40}),
            ],
            cwd=root,
            env=clean_env({"PYTHONPATH": str(HERE.parent)}),
            stderr=subprocess.PIPE,
        )
        for w in range(3)
    ]
    runs = 0
    try:
        while any(w.poll() is None for w in writers) or runs < 5:
            r = zygote.run("cas", "fsck", "--json", cwd=root)
            assert r.returncode == 0, r.stdout.decode()
            runs += 1
            count("concurrency", "cases")
    finally:
        for w in writers:
            _, err = w.communicate(timeout=120)
            assert w.returncode == 0, err.decode()[-3000:]
    assert runs >= 5
    check(root, zygote.run, category="concurrency", acked=acks.read_text().split())


def _promote_after(root: Path, zygote: Zygote, name: str) -> None:
    """The next user gets through without waiting: with a lock timeout of 0, a lock
    still held would be exit 5."""
    cap = prepare(root, {"release/next": name.encode()}, name=name)
    r = zygote.run("promote", cap, cwd=root, env={"PROMOTE_LOCK_TIMEOUT": "0"})
    assert r.returncode == 0, r.stderr


def test_locks_of_killed_processes_never_block(make_ws, zygote: Zygote) -> None:
    """Invariant: a process killed while holding the ledger lock, the view lock, a
    put's temp lock or gc's collect lock leaves lock files but no lock: the next
    promote, put and gc go through at once, and nothing is left inconsistent."""
    root = make_ws()
    for n, step in enumerate(["commit.before", "view.building", "put.temp-written:2"]):
        cap = prepare(root, {"release/a": f"killed {n}".encode()}, name=f"k{n}")
        r = zygote.run("promote", cap, cwd=root, env={"CAS_CRASH_AT": step})
        assert r.returncode == -9
        count("concurrency", "cases")
        _promote_after(root, zygote, f"after-{n}")
        check(root, zygote.run, category="concurrency", allow=[("stray-temp", "tmp/*")])
    for n in range(3):  # leave something to collect, then kill gc mid-way
        (root / f"junk{n}").write_bytes(f"junk {n}".encode())
        assert real("cas", "put", root / f"junk{n}", cwd=root).returncode == 0
    r = zygote.run(
        "cas", "gc", "--grace", "0", cwd=root, env={"CAS_CRASH_AT": "gc.before-unlink:2"}
    )
    assert r.returncode == -9
    count("concurrency", "cases")
    _promote_after(root, zygote, "after-gc")
    assert zygote.run("cas", "gc", "--grace", "0", cwd=root).returncode == 0
    check(root, zygote.run, category="concurrency")


def test_a_live_lock_holder_makes_the_next_user_wait_then_refuse(make_ws, zygote: Zygote) -> None:
    """Invariant: while a live process holds the ledger lock, a promotion waits for it
    and, past the timeout, refuses with exit 5 and changes nothing."""
    root = make_ws()
    cap = prepare(root, {"release/a": b"1"}, name="held")
    fd = os.open(root / "execution/ledger/.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = zygote.run("promote", cap, cwd=root, env={"PROMOTE_LOCK_TIMEOUT": "0.5"})
    finally:
        os.close(fd)
    assert r.returncode == 5, r.stderr
    assert b"held by another process" in r.stderr
    count("concurrency", "cases")
    check(root, zygote.run, category="concurrency")
    assert zygote.run("promote", cap, cwd=root).returncode == 0
    check(root, zygote.run, category="concurrency")
