"""The commit-backend contract. FileLedger and PgLedger must pass these same tests.

The `machine` fixture lists the backends: a workspace whose ledger is the local
directory, and one whose ledger is a fresh, migrated database on the session's real
PostgreSQL server (whose failure to start fails these tests).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from promote_ws import Machine, commit_worker, make_machine, next_entry

from cas.errors import ConflictError, IntegrityError
from promote.ledger.backend import CommitBackend
from promote.ledger.entry import Head, parse_entry
from promote.ledger.files import FileLedger, file_lock
from promote.ledger.pg import PgLedger
from promote.model import State
from promote.verify import verify_ledger, verify_workspace

KINDS = ["file", "pg"]
RACERS = 8
#: More rounds for a soak run: RACE_ROUNDS=50 pytest tests/remote -k race
ROUNDS = int(os.environ.get("RACE_ROUNDS", "3"))


def _close(ledger: CommitBackend) -> None:
    if isinstance(ledger, PgLedger):
        ledger.close()


@pytest.fixture(params=KINDS)
def machine(request: pytest.FixtureRequest, tmp_path: Path) -> Machine:
    spec = "execution/ledger" if request.param == "file" else request.getfixturevalue("pg_url")
    return make_machine(tmp_path / "ws", spec)


@pytest.fixture
def ledger(machine: Machine) -> Iterator[CommitBackend]:
    led = machine.ledger()
    yield led
    _close(led)


def _spec(ledger: CommitBackend) -> str:
    return str(ledger.dir) if isinstance(ledger, FileLedger) else ledger.url  # type: ignore[attr-defined]


# -- reading and committing ------------------------------------------------------


def test_genesis(machine: Machine, ledger: CommitBackend) -> None:
    assert ledger.head() == Head.genesis()
    with pytest.raises(IntegrityError, match="entry 1 is missing"):
        ledger.read(1)
    assert ledger.state(machine.ws.store) == State()
    assert list(ledger.entries()) == []


def test_commit_moves_head_entries_and_state(machine: Machine, ledger: CommitBackend) -> None:
    ws = machine.ws
    e1, s1 = next_entry(ledger, ws, "release/a.txt", b"one")
    h1 = ledger.commit(Head.genesis(), e1, s1)
    assert h1 == e1.head() == ledger.head()
    assert ledger.read(1) == e1.data
    assert parse_entry(ledger.read(1)).hash == e1.hash
    assert ledger.state(ws.store) == s1

    e2, s2 = next_entry(ledger, ws, "release/a.txt", b"two")
    h2 = ledger.commit(h1, e2, s2)
    assert (h2.seq, h2.entry, h2.state) == (2, e2.hash, s2.ref())
    assert list(ledger.entries()) == [e1.data, e2.data]
    assert list(ledger.entries(2)) == [e2.data]
    assert ledger.state(ws.store) == s2
    problems, state, _ = verify_ledger(ledger, ws.store)
    assert problems == [] and state == s2
    # a whole, signed chain, but no gate made these entries: neither re-justifies
    found = verify_workspace(ws, ledger, view=False)
    assert [(p.kind, p.location) for p in found] == [
        ("unjustified", "ledger entry 1"),
        ("unjustified", "ledger entry 2"),
    ]
    assert all("VSA" in p.detail for p in found), found  # the first check they fail


def test_stale_base_is_a_conflict_and_changes_nothing(
    machine: Machine, ledger: CommitBackend
) -> None:
    ws = machine.ws
    a, sa = next_entry(ledger, ws, "release/a.txt", b"a")
    b, sb = next_entry(ledger, ws, "release/b.txt", b"b")  # also planned from genesis
    won = ledger.commit(Head.genesis(), a, sa)
    with pytest.raises(ConflictError, match="moved"):
        ledger.commit(Head.genesis(), b, sb)
    assert ledger.head() == won
    assert ledger.state(ws.store) == sa
    with pytest.raises(IntegrityError):
        ledger.read(2)


def test_a_removal_clears_the_pointer(machine: Machine, ledger: CommitBackend) -> None:
    ws = machine.ws
    for path, data in (("release/a.txt", b"a"), ("release/b.txt", b"b"), ("release/a.txt", None)):
        e, s = next_entry(ledger, ws, path, data)
        ledger.commit(ledger.head(), e, s)
    assert ledger.state(ws.store) == s
    assert set(s.pointers) == {"release/b.txt"}
    e, s = next_entry(ledger, ws, "release/b.txt", None)
    ledger.commit(ledger.head(), e, s)
    assert ledger.state(ws.store) == State() and ledger.head().state == State().ref()
    assert verify_ledger(ledger, ws.store)[0] == []
    found = verify_workspace(ws, ledger, view=False)
    assert [(p.kind, p.location) for p in found] == [
        ("unjustified", f"ledger entry {n}") for n in range(1, 5)
    ]


def test_a_fresh_backend_object_sees_the_same(machine: Machine, ledger: CommitBackend) -> None:
    ws = machine.ws
    e, s = next_entry(ledger, ws, "release/a.txt", b"a")
    ledger.commit(ledger.head(), e, s)
    other = machine.ledger()
    try:
        assert other.head() == e.head()
        assert other.read(1) == e.data
        assert other.state(ws.store) == s
    finally:
        _close(other)


# -- the race --------------------------------------------------------------------


def test_race_in_processes_exactly_one_commit_wins(machine: Machine, ledger: CommitBackend) -> None:
    """RACERS processes commit from one head at once (after a barrier), ROUNDS times."""
    ctx = multiprocessing.get_context("spawn")
    ws = machine.ws
    for rnd in range(ROUNDS):
        base = ledger.head()
        planned = [
            next_entry(ledger, ws, f"release/r{rnd}/{i}.txt", f"{rnd}.{i}".encode())
            for i in range(RACERS)
        ]
        barrier = ctx.Barrier(RACERS)
        queue = ctx.Queue()
        procs = [
            ctx.Process(
                target=commit_worker,
                args=(i, (str(machine.root), _spec(ledger), e.data, s.encode(), barrier), queue),
            )
            for i, (e, s) in enumerate(planned)
        ]
        for p in procs:
            p.start()
        got = dict(queue.get(timeout=120) for _ in procs)
        for p in procs:
            p.join(30)
        results = [got[i] for i in range(RACERS)]
        winners = [i for i, r in enumerate(results) if r == "won"]
        assert len(winners) == 1, results
        # the losers waited for the lock, then saw the winner's head
        assert all(r.startswith("ConflictError") and "moved" in r for r in results if r != "won"), (
            results
        )
        assert ledger.head() == planned[winners[0]][0].head()
        assert ledger.head().seq == base.seq + 1
    problems, _, _ = verify_ledger(ledger, ws.store)
    assert problems == []


def _race_round(m: Machine, rnd: int) -> tuple[list[int], list[str], float]:
    caps = [
        m.capsule({f"release/r{rnd}/{i}.txt": f"{rnd}-{i}".encode()}, f"r{rnd}-{i}")
        for i in range(RACERS)
    ]
    t0 = time.monotonic()
    procs = [m.popen(c) for c in caps]
    outs = [p.communicate(timeout=300) for p in procs]
    return [p.returncode for p in procs], [e.decode() for _, e in outs], time.monotonic() - t0


def test_cli_race_exactly_one_runner_wins(machine: Machine) -> None:
    """RACERS `promote` processes from one head: one exits 0, the others 5; ROUNDS times."""
    first = machine.promote(machine.capsule({"release/base.txt": b"base"}, "c0"))
    assert first.returncode == 0, first.stderr
    for rnd in range(ROUNDS):
        codes, errs, _ = _race_round(machine, rnd)
        assert sorted(codes) == [0] + [5] * (RACERS - 1), (codes, errs)
        for code, err in zip(codes, errs, strict=True):
            if code == 5:
                assert "moved" in err or "stale capsule" in err, err
    ledger = machine.ledger()
    try:
        assert ledger.head().seq == 1 + ROUNDS
    finally:
        _close(ledger)
    for cmd in (("ledger", "verify"), ("verify",)):
        r = machine.promote(*cmd)
        assert r.returncode == 0, r.stdout + r.stderr


# -- locks and crashes -----------------------------------------------------------


@contextlib.contextmanager
def _hold_commit_lock(machine: Machine) -> Iterator[None]:
    """Hold what a commit must take: the ledger's flock, or the head row lock."""
    ledger = machine.ledger()
    if isinstance(ledger, FileLedger):
        with file_lock(ledger.dir / ".lock"):
            yield
        return
    assert isinstance(ledger, PgLedger)
    import psycopg

    with psycopg.connect(ledger.url) as conn:
        conn.execute("SELECT 1 FROM promote_head FOR UPDATE")
        yield
        conn.rollback()


def test_a_held_commit_lock_is_a_conflict(machine: Machine) -> None:
    cap = machine.capsule({"release/a.txt": b"a"}, "a")
    with _hold_commit_lock(machine):
        r = machine.promote(cap, env={"PROMOTE_LOCK_TIMEOUT": "0.5"})
    assert r.returncode == 5, r.stderr
    assert b"lock" in r.stderr and b"retry" in r.stderr
    again = machine.promote(cap)
    assert again.returncode == 0, again.stderr


def test_crash_before_the_commit_point_leaves_nothing(machine: Machine) -> None:
    assert machine.promote(machine.capsule({"release/a.txt": b"a"}, "a")).returncode == 0
    ledger = machine.ledger()
    try:
        before = ledger.head()
        cap = machine.capsule({"release/b.txt": b"b"}, "b")
        r = machine.promote(cap, env={"CAS_CRASH_AT": "commit.before"})
        assert r.returncode == -9, r.stderr
        assert ledger.head() == before
    finally:
        _close(ledger)
    assert machine.promote("recover").returncode == 0
    v = machine.promote("verify")
    assert v.returncode == 0, v.stdout + v.stderr
    assert machine.promote(cap).returncode == 0


def test_crash_after_the_commit_point_keeps_the_promotion(machine: Machine) -> None:
    assert machine.promote(machine.capsule({"release/a.txt": b"a"}, "a")).returncode == 0
    cap = machine.capsule({"release/b.txt": b"b"}, "b")
    r = machine.promote(cap, env={"CAS_CRASH_AT": "commit.after"})
    assert r.returncode == -9, r.stderr
    ledger = machine.ledger()
    try:
        assert ledger.head().seq == 2
    finally:
        _close(ledger)
    assert machine.promote("verify").returncode == 3  # the view lags the ledger
    assert machine.promote("recover").returncode == 0
    v = machine.promote("verify")
    assert v.returncode == 0, v.stdout + v.stderr
    assert machine.view_files()["release/b.txt"] == b"b"


# -- verification ----------------------------------------------------------------


def _tamper(ledger: CommitBackend, seq: int, data: bytes) -> None:
    """Overwrite entry `seq` behind the backend's back, as an attacker with access would."""
    if isinstance(ledger, FileLedger):
        p = ledger.entry_path(seq)
        p.chmod(0o644)
        p.write_bytes(data)
        return
    assert isinstance(ledger, PgLedger)
    import psycopg

    with psycopg.connect(ledger.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE promote_ledger SET data = %s WHERE seq = %s", (data, seq))
        conn.execute("ALTER TABLE promote_ledger DISABLE TRIGGER promote_ledger_no_change")
        conn.execute("UPDATE promote_ledger SET data = %s WHERE seq = %s", (data, seq))
        conn.execute("ALTER TABLE promote_ledger ENABLE TRIGGER promote_ledger_no_change")


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d.replace(b"release/a.txt", b"release/x.txt"), id="edited"),
        pytest.param(lambda d: d + b" ", id="not-canonical"),
        pytest.param(lambda d: b"{}", id="not-an-entry"),
    ],
)
def test_verify_finds_a_tampered_entry(machine: Machine, ledger: CommitBackend, edit: Any) -> None:
    for name, data in (("a", b"a"), ("b", b"b")):
        assert machine.promote(machine.capsule({f"release/{name}.txt": data}, name)).returncode == 0
    _tamper(ledger, 1, edit(ledger.read(1)))
    problems, state, _ = verify_ledger(ledger, machine.ws.store)
    assert problems and state is None
    r = machine.promote("ledger", "verify")
    assert r.returncode == 3
    assert b"ledger entry" in r.stdout


# -- the same bytes in both --------------------------------------------------------


def test_both_backends_write_identical_entries(tmp_path: Path, pg_url: str) -> None:
    """The same promotions give byte-identical entries, hashes and heads in both."""
    local = make_machine(tmp_path / "local", "execution/ledger")
    remote = make_machine(tmp_path / "remote", pg_url)
    for i, data in enumerate([b"one", b"two", b"three"]):
        for m in (local, remote):
            cap = m.capsule({"release/app.txt": data, f"release/n{i}.txt": data}, f"c{i}")
            r = m.promote(cap)
            assert r.returncode == 0, r.stderr
    a, b = local.ledger(), remote.ledger()
    try:
        assert a.head() == b.head()
        assert list(a.entries()) == list(b.entries())
    finally:
        _close(b)
    r = remote.promote("ledger", "export", "--to", tmp_path / "export")
    assert r.returncode == 0, r.stderr
    for name in ["HEAD", *(f"entries/{n:012d}.json" for n in (1, 2, 3))]:
        assert (tmp_path / "export" / name).read_bytes() == (
            local.root / "execution/ledger" / name
        ).read_bytes(), name
