"""Crashes with the ledger in PostgreSQL (the session's real server, tests/servers_pg.py).

Invariant, as for the file ledger (test_crash.py): a kill at any moment loses and
corrupts nothing, and the promotion either never happened or happened whole. Here the
commit point is the COMMIT of one transaction, so what can fail around it is the
server and the connection too:

* promote is SIGKILLed at every crash step;
* the server is crashed and restarted (`pg_ctl stop -m immediate`, then start, which
  replays the WAL) while a promotion is paused inside its transaction, or just after
  its COMMIT;
* the connection is dropped at COMMIT: the server ends the backend
  (pg_terminate_backend from a second connection) while the promotion is paused in
  its transaction, and a stand-in network (a loopback TCP proxy) loses the COMMIT, or
  loses the server's answer to it, so the commit happened and the client cannot know;
* SIGKILL at random moments of a loop of puts and promotions.

A failure is one line and a non-zero exit, the database's rows are the replay of its
ledger (checker.py reads them itself), and `promote recover` then re-running the
capsule converges: exit 0 if the promotion had not happened, 5 if it had.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability.checker import check, count, replay
from reliability.distributed import Paused, configure, dropper, one_line
from reliability.scenario import Zygote, prepare, real
from reliability.test_crash import PROMOTE_STEPS, STRAY
from servers_pg import PgServer

from promote.ledger.pg import migrate

#: The file ledger's steps, less the one it alone has (its HEAD cache): the
#: PostgreSQL head is written in the entry's own transaction.
PG_STEPS = {s: done for s, done in PROMOTE_STEPS.items() if s != "commit.head-written"}

MakePg = Callable[..., Path]


@pytest.fixture
def make_pg_ws(make_ws, pg_server: PgServer) -> MakePg:
    """`make_pg_ws(url=None)`: a fresh workspace whose ledger is a fresh, migrated
    database on the session's server (or `url`)."""

    def make(url: str | None = None) -> Path:
        if url is None:
            url = pg_server.new_database()
            migrate(url)
        return configure(make_ws(), ledger=url)

    return make


def _released(root: Path, cli: Zygote) -> Path:
    """One promotion, and a capsule for a second that differs everywhere."""
    cap = prepare(root, {"release/a": b"a1", "release/b": b"b1"}, name="first")
    r = cli("promote", cap, cwd=root)
    assert r.returncode == 0, r.stderr
    return prepare(root, {"release/a": b"a2", "release/sub/c": b"c2"}, name="second")


def _seq(root: Path) -> int:
    return len(replay(root)[0])


def _converges(root: Path, cli: Zygote, cap: Path, committed: bool, category: str) -> None:
    """`promote recover`, then the capsule again: the rest of the promotion, once."""
    rec = cli("promote", "recover", cwd=root)
    assert rec.returncode == 0, rec.stderr
    check(root, cli, category=category, allow=STRAY)
    again = cli("promote", cap, cwd=root)
    assert again.returncode == (5 if committed else 0), again.stderr
    assert cli("cas", "gc", "--grace", "0", cwd=root).returncode == 0
    report = check(root, cli, category=category)
    assert report.head_seq == 2
    assert report.state["release/a"][0] != report.state["release/b"][0]


@pytest.mark.parametrize("step", list(PG_STEPS))
def test_kill_promote_at_every_step(make_pg_ws: MakePg, cli: Zygote, step: str) -> None:
    """Invariant: promote SIGKILLed at STEP with the ledger in PostgreSQL: before
    COMMIT the server rolls the transaction back (no row, no lock left), after it
    the entry, the head and the pointer rows are there together; straight after the
    kill the view shows one whole ledger state."""
    root = make_pg_ws()
    cap = _released(root, cli)
    run = real if step == "commit.before" else cli
    r = run("promote", cap, cwd=root, env={"CAS_CRASH_AT": step})
    assert r.returncode == -9, (r.returncode, r.stderr)
    count("crash-pg", "cases")
    committed = PG_STEPS[step]
    assert _seq(root) == (2 if committed else 1)
    check(root, cli, category="crash-pg", view="any")
    _converges(root, cli, cap, committed, "crash-pg")


@pytest.mark.parametrize("step", ["commit.before", "commit.after"])
def test_server_restarted_mid_commit(
    make_pg_ws: MakePg, cli: Zygote, pg_server: PgServer, step: str
) -> None:
    """Invariant: the server crashes and restarts while a promotion is paused in its
    open transaction (commit.before: nothing of it survives; the COMMIT fails in one
    line) or just after its COMMIT returned (commit.after: the commit survives the
    crash, WAL replay included, and the promotion is whole; the view, read over the
    lost connection, is behind until `promote recover`, which the one line says)."""
    root = make_pg_ws()
    cap = _released(root, cli)
    with pg_server.connect() as conn:
        # what the session wrote so far (databases made by copying WAL) is not replayed
        # at each start: only what follows, this promotion's transaction included
        conn.execute("CHECKPOINT")
    paused = Paused(f"step:{step}", "promote", cap, cwd=root)
    pg_server.restart()
    r = paused.resume()
    count("crash-pg", "cases")
    count("crash-pg", "restarts")
    committed = step == "commit.after"
    assert _seq(root) == (2 if committed else 1)
    assert r.returncode == 1, r.stderr
    if committed:  # the commit stands; the view, read over the lost connection, lags
        assert "committed, but the view is behind" in one_line(r)
    else:
        assert "committing" in one_line(r)
    check(root, cli, category="crash-pg", view="any")
    _converges(root, cli, cap, committed, "crash-pg")


def test_backend_terminated_before_commit(
    make_pg_ws: MakePg, cli: Zygote, pg_server: PgServer
) -> None:
    """Invariant: the server ends the promotion's backend (pg_terminate_backend from a
    second connection) while its transaction is open: COMMIT fails in one line, exit
    1, and no row of it is left; the capsule then promotes."""
    url = pg_server.new_database()
    migrate(url)
    root = make_pg_ws(url)
    cap = _released(root, cli)
    paused = Paused("step:commit.before", "promote", cap, cwd=root)
    with pg_server.connect() as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'promote'"
            " AND state = 'idle in transaction'",
            (url.rsplit("/", 1)[1],),
        ).fetchall()
    assert ended == [(True,)]
    r = paused.resume()
    count("crash-pg", "cases")
    count("crash-pg", "dropped connections")
    assert r.returncode == 1, r.stderr
    assert "committing" in one_line(r)
    assert _seq(root) == 1
    check(root, cli, category="crash-pg")
    _converges(root, cli, cap, False, "crash-pg")


@pytest.mark.parametrize("when", ["before", "after"])
def test_connection_dropped_at_commit(
    make_pg_ws: MakePg, cli: Zygote, pg_server: PgServer, when: str
) -> None:
    """Invariant, through a stand-in network (CommitDropper, a loopback TCP proxy in
    front of the real server): the connection dies as COMMIT is sent ("before": the
    server never gets it and rolls back) or after the server committed ("after": its
    answer is lost). Either way the promotion fails in one line that says to check
    the head, and the ledger holds the whole promotion or none of it; after `promote
    recover` the view shows the head."""
    direct = pg_server.new_database()
    migrate(direct)
    with dropper(pg_server.host, pg_server.port) as proxy:
        root = make_pg_ws(proxy.url(direct.rsplit("/", 1)[1], pg_server.user))
        cap = _released(root, cli)
        proxy.drop(when)
        r = cli("promote", cap, cwd=root)
        assert proxy.dropped == 1
        count("crash-pg", "cases")
        count("crash-pg", "dropped connections")
        assert r.returncode == 1, r.stderr
        assert "if the connection dropped at COMMIT, check the head" in one_line(r)
        committed = when == "after"
        assert _seq(root) == (2 if committed else 1)
        check(root, cli, category="crash-pg", view="any")
        _converges(root, cli, cap, committed, "crash-pg")


def test_random_kills_during_puts_and_promotions(
    make_pg_ws: MakePg, zygote: Zygote, tmp_path: Path
) -> None:
    """Invariant: SIGKILL at a random moment of a loop of puts and promotions against
    PostgreSQL, then recovery, leaves the rows the replay of the ledger, the view one
    whole state, and every acknowledged put in the store."""
    rng = random.Random("kills-pg")
    cli = zygote.run
    root = make_pg_ws()
    acks = tmp_path / "acks"
    acks.touch()
    for i in range(40):
        spec = {"root": str(root), "seed": f"pg-{i}", "acks": str(acks)}
        r = zygote.run_many([{"cwd": root, "loop": spec}], kill_after=[rng.uniform(0.0, 0.25)])[0]
        assert r.returncode == -9, r.stderr.decode()[-2000:]
        count("crash-pg", "cases")
        acked = sorted(set(acks.read_text().split()))
        check(root, cli, category="crash-pg", view="any", acked=acked)
        rec = cli("promote", "recover", cwd=root)
        assert rec.returncode == 0, rec.stderr
        check(root, cli, category="crash-pg", allow=STRAY, acked=acked)
    assert _seq(root) > 0  # the loop got as far as committing, not only putting
