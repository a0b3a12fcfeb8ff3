"""PostgreSQL specifics, and moving between machines: migrations, export, push, checkout.

Everything runs against the session's real PostgreSQL server; the store side of the
two-machine test also against a real SeaweedFS.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers import run_cli
from promote_ws import Machine, make_machine
from servers import S3Server

from cas.local import LocalStore
from promote.canonical import pretty
from promote.ledger.pg import PgLedger, migrations


def _ok(r: subprocess.CompletedProcess[bytes]) -> str:
    assert r.returncode == 0, (r.stdout + r.stderr).decode()
    return r.stdout.decode()


def _promote_n(m: Machine, n: int, tag: str = "") -> None:
    for i in range(n):
        _ok(m.promote(m.capsule({f"release/{tag}{i}.txt": f"{tag}{i}".encode()}, f"{tag}c{i}")))


def _set_ledger(m: Machine, spec: str) -> None:
    cfg = m.root / "control/promote/config.json"
    config = json.loads(cfg.read_bytes())
    config["ledger"] = spec
    cfg.write_bytes(pretty(config))


# -- migrations ------------------------------------------------------------------


def test_promote_refuses_an_unmigrated_database_until_db_migrate(
    tmp_path: Path, pg_empty_url: str
) -> None:
    m = make_machine(tmp_path / "ws", pg_empty_url)
    cap = m.capsule({"release/a.txt": b"a"}, "a", base=None)
    r = m.promote(cap)
    assert r.returncode == 2
    assert b"has no promote schema: run 'promote db migrate' first" in r.stderr
    assert m.promote("db", "status").returncode == 2

    out = _ok(m.promote("db", "migrate"))
    assert "applied 0001_ledger.sql" in out
    assert f"schema at version {len(migrations())}" in out
    assert "applied" not in _ok(m.promote("db", "migrate"))  # idempotent
    assert "schema current" in _ok(m.promote("db", "status"))
    _ok(m.promote(cap))


def test_concurrent_migrations_apply_once(tmp_path: Path, pg_empty_url: str) -> None:
    from helpers import clean_env, script

    procs = [
        subprocess.Popen(
            [script("promote"), "db", "migrate", "--url", pg_empty_url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    assert sum(o.count(b"applied 0001") for o, _ in outs) == 1


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        pytest.param(
            "UPDATE promote_migrations SET checksum = 'edited' WHERE version = 1",
            b"differs from this promote's 0001_ledger.sql",
            id="edited-migration",
        ),
        pytest.param(
            "INSERT INTO promote_migrations (version, name, checksum)"
            " VALUES (99, '0099_future.sql', 'x')",
            b"newer than this promote knows",
            id="newer-schema",
        ),
    ],
)
def test_a_schema_promote_does_not_know_is_refused(
    tmp_path: Path, pg_url: str, sql: str, message: bytes
) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql.encode())
    for cmd in (("ledger", "verify"), ("db", "migrate"), ("db", "status")):
        r = m.promote(*cmd)
        assert r.returncode in (2, 3), r
        assert message in r.stdout + r.stderr, r


def test_the_ledger_table_is_append_only(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO promote_ledger (seq, hash, prev, data) VALUES (1, %s, NULL, 'x')",
            ("blake3:" + "a" * 64,),
        )
        for sql in (
            "UPDATE promote_ledger SET data = 'y'",
            "DELETE FROM promote_ledger",
            "TRUNCATE promote_ledger",
        ):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(sql.encode())


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://promote:secret@127.0.0.1:{port}/nowhere"
    m = make_machine(tmp_path / "ws", url)
    r = m.promote(m.capsule({"release/a.txt": b"a"}, "a", base=None))
    assert r.returncode == 1
    assert b"cannot connect to the ledger database" in r.stderr
    assert b"secret" not in r.stderr and b"promote:***@" in r.stderr


def test_capsule_new_needs_the_ledger_only_for_the_current_state(tmp_path: Path) -> None:
    """A builder writes a capsule without ledger access; --expect-current and
    --base current read the ledger, and an unreachable one is the same clear error."""
    import socket

    from promote_ws import sign_check

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    m = make_machine(tmp_path / "ws", f"postgresql://promote:secret@127.0.0.1:{port}/nowhere")
    ref = m.put(b"a")
    check = sign_check(m.root, m.ws, [b"a"])
    args = ("--target", f"release/a.txt={ref.digest}", "--attestation", str(check.digest))
    _ok(m.promote("capsule", "new", *args, "-o", "c.json"))
    assert json.loads((m.root / "c.json").read_bytes())["targets"][0]["path"] == "release/a.txt"
    r = m.promote("capsule", "new", *args, "--target", f"release/A.txt={ref.digest}", "-o", "x")
    assert r.returncode == 2 and b"collide" in r.stderr  # the layout among its own paths
    for extra in (("--expect-current",), ("--base", "current")):
        r = m.promote("capsule", "new", *args, *extra, "-o", "d.json")
        assert r.returncode == 1, r.stderr
        assert b"cannot connect to the ledger database" in r.stderr
        assert b"secret" not in r.stderr
    assert not (m.root / "d.json").exists()


def test_pointer_rows_that_disagree_with_the_head_are_an_integrity_error(
    tmp_path: Path, pg_url: str
) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    _promote_n(m, 1)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE promote_pointers SET size = size + 1")
    r = m.promote("checkout")
    assert r.returncode == 3
    assert b"pointer rows are not the state the head names" in r.stderr


# -- ledger export ---------------------------------------------------------------


def test_export_writes_local_ledger_files_incrementally(tmp_path: Path, pg_url: str) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    _promote_n(m, 2)
    out = tmp_path / "export"
    assert "exported 2 new entries" in _ok(m.promote("ledger", "export", "--to", out))
    assert sorted(p.name for p in (out / "entries").iterdir()) == [
        "000000000001.json",
        "000000000002.json",
    ]
    with PgLedger(pg_url) as ledger:
        assert (out / "entries/000000000002.json").read_bytes() == ledger.read(2)
        head = ledger.head()
    assert json.loads((out / "HEAD").read_bytes())["entry"] == str(head.entry)
    # `promote ledger verify` checks the export as well as the database
    _ok(m.promote("ledger", "verify", env={"PROMOTE_LEDGER": str(out)}))
    _ok(m.promote("ledger", "verify"))

    _promote_n(m, 1, tag="more")
    assert "exported 1 new entries" in _ok(m.promote("ledger", "export", "--to", out))
    assert "exported 0 new entries" in _ok(m.promote("ledger", "export", "--to", out))

    e1 = out / "entries/000000000001.json"
    e1.chmod(0o644)
    e1.write_bytes(e1.read_bytes().replace(b"release/", b"releasX/"))
    r = m.promote("ledger", "export", "--to", out)
    assert r.returncode == 3
    assert b"entry 1 differs" in r.stderr


def test_default_export_goes_into_the_workspace(tmp_path: Path, pg_url: str) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    _promote_n(m, 1)
    _ok(m.promote("ledger", "export"))
    assert (m.root / "execution/ledger-export/entries/000000000001.json").is_file()


# -- from local to remote --------------------------------------------------------


def test_push_moves_a_local_ledger_to_postgresql(tmp_path: Path, pg_empty_url: str) -> None:
    """The documented path: migrate, push, point the config at the database."""
    m = make_machine(tmp_path / "ws", "execution/ledger")
    _promote_n(m, 3)
    local = {p.name: p.read_bytes() for p in (m.root / "execution/ledger/entries").iterdir()}

    _ok(m.promote("db", "migrate", "--url", pg_empty_url))
    assert "pushed 3 entries" in _ok(m.promote("ledger", "push", pg_empty_url))
    assert "pushed 0 entries" in _ok(m.promote("ledger", "push", pg_empty_url))
    _set_ledger(m, pg_empty_url)
    _ok(m.promote("ledger", "verify"))
    _ok(m.promote("verify"))  # same head, so the view still matches
    _promote_n(m, 1, tag="after")

    _ok(m.promote("ledger", "export", "--to", tmp_path / "export"))
    for name, data in local.items():
        assert (tmp_path / "export/entries" / name).read_bytes() == data
    with PgLedger(pg_empty_url) as ledger:
        assert ledger.head().seq == 4
        ledger.state(m.ws.store)  # the pointer rows agree with the stored state object


def test_push_refuses_a_database_that_diverged(tmp_path: Path, pg_url: str) -> None:
    a = make_machine(tmp_path / "a", "execution/ledger")
    b = make_machine(tmp_path / "b", pg_url)
    _promote_n(a, 2, tag="a")
    _promote_n(b, 1, tag="b")
    r = a.promote("ledger", "push", pg_url)
    assert r.returncode == 5
    assert b"diverges from the local ledger at entry 1" in r.stderr


def test_push_refuses_a_broken_local_ledger(tmp_path: Path, pg_url: str) -> None:
    m = make_machine(tmp_path / "ws", "execution/ledger")
    _promote_n(m, 2)
    e1 = m.root / "execution/ledger/entries/000000000001.json"
    e1.chmod(0o644)
    e1.write_bytes(e1.read_bytes() + b" ")
    r = m.promote("ledger", "push", pg_url)
    assert r.returncode == 3
    assert b"has 1 problem; 'promote ledger verify' lists them" in r.stderr, r.stderr
    with PgLedger(pg_url) as ledger:
        assert ledger.head().seq == 0


# -- store push ------------------------------------------------------------------


def test_store_push_copies_every_object_verified(tmp_path: Path) -> None:
    m = make_machine(tmp_path / "ws", "execution/ledger")
    _promote_n(m, 2)
    src = m.ws.store
    dest_dir = tmp_path / "dest"
    dest = LocalStore.init(dest_dir)
    out = _ok(m.promote("store", "push", dest_dir))
    names = list(src.iterate())
    assert f"pushed {len(names)} objects" in out
    assert list(dest.iterate()) == names
    assert dest.fsck() == []
    assert f"{len(names)} were there already" in _ok(m.promote("store", "push", dest_dir))

    # a corrupt source object is never copied under its name
    extra = src.put_bytes(b"will rot")
    assert isinstance(src, LocalStore)
    path = src.object_path(extra.digest)
    path.chmod(0o644)
    path.write_bytes(b"will ro7")
    r = m.promote("store", "push", dest_dir)
    assert r.returncode == 3
    assert not dest.has(extra.digest)


def test_store_push_to_s3(tmp_path: Path, s3_server: S3Server) -> None:
    from cas.s3 import S3Store

    m = make_machine(tmp_path / "ws", "execution/ledger")
    _promote_n(m, 2)
    url = f"s3://{s3_server.new_bucket()}/cas"
    S3Store.init(url, client=s3_server.client())
    out = _ok(m.promote("store", "push", url, env=s3_server.env()))
    n = len(list(m.ws.store.iterate()))
    assert f"pushed {n} objects" in out
    dest = S3Store.existing(url, client=s3_server.client())
    assert list(dest.iterate()) == list(m.ws.store.iterate())
    assert dest.fsck() == []


# -- checkout --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["symlink", "copy"])
def test_checkout_to_a_directory(tmp_path: Path, pg_url: str, mode: str) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    _promote_n(m, 2)
    to = tmp_path / "elsewhere"
    out = _ok(m.promote("checkout", "--to", to, "--mode", mode))
    assert f"checked out ledger entry 2 (2 paths, {mode} mode)" in out
    assert (to / "release/0.txt").read_bytes() == b"0"
    assert (to / "release/1.txt").read_bytes() == b"1"
    assert (to / "release").is_symlink() == (mode == "symlink")

    _promote_n(m, 1, tag="x")
    _ok(m.promote("checkout", "--to", to, "--mode", mode))
    assert (to / "release/x0.txt").read_bytes() == b"x0"


def test_checkout_verifies_every_object(tmp_path: Path, pg_url: str) -> None:
    m = make_machine(tmp_path / "ws", pg_url)
    _promote_n(m, 1)
    to = tmp_path / "elsewhere"
    _ok(m.promote("checkout", "--to", to))
    _promote_n(m, 1, tag="bad")
    store = m.ws.store
    assert isinstance(store, LocalStore)
    bad = next(d for d in store.iterate() if store.read_bytes(d) == b"bad0")
    path = store.object_path(bad)
    path.chmod(0o644)
    path.write_bytes(b"bad1")
    r = m.promote("checkout", "--to", to)
    assert r.returncode == 3
    assert b"corrupt" in r.stderr
    # the view was not switched: it still shows the state before
    assert (to / "release/0.txt").read_bytes() == b"0"
    assert not (to / "release/bad0.txt").exists()


# -- two machines ----------------------------------------------------------------


@pytest.mark.parametrize("store_kind", ["shared-dir", "s3"])
def test_two_machines_race_on_one_head_and_converge(
    tmp_path: Path,
    pg_url: str,
    store_kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two runners, separate working directories, one database and one store."""
    env: dict[str, str] = {}
    if store_kind == "s3":
        from cas.s3 import S3Store

        server: S3Server = request.getfixturevalue("s3_server")
        store = f"s3://{server.new_bucket()}/{uuid.uuid4().hex[:8]}"
        S3Store.init(store, client=server.client())
        env = server.env()
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        mode = "copy"
    else:
        store = str(tmp_path / "shared-store")
        LocalStore.init(Path(store))
        mode = "symlink"
    a = make_machine(tmp_path / "a", pg_url, store=store, mode=mode)
    b = make_machine(tmp_path / "b", pg_url, store=store, mode=mode)
    a.env = b.env = env
    _ok(a.promote(a.capsule({"release/app.txt": b"v1"}, "v1")))

    # both plan from the same head, on their own machines, then race
    cap_a = a.capsule({"release/app.txt": b"v2-from-a"}, "v2")
    cap_b = b.capsule({"release/app.txt": b"v2-from-b"}, "v2")
    procs = [a.popen(cap_a), b.popen(cap_b)]
    outs = [p.communicate(timeout=120) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 5], outs
    winner = b"v2-from-a" if codes[0] == 0 else b"v2-from-b"

    for m in (a, b):
        _ok(m.promote("checkout"))
        _ok(m.promote("verify"))
        assert m.view_files() == {"release/app.txt": winner}
    _ok(a.promote("ledger", "verify"))


def test_move_a_workspace_to_s3_and_postgresql(
    tmp_path: Path, pg_empty_url: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/several-machines.md, "From local to remote", step by step, then a second machine joins."""
    from cas.s3 import S3Store

    m = make_machine(tmp_path / "ws", "execution/ledger", mode="copy")
    _promote_n(m, 2)
    before = m.view_files()
    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    m.env = s3_server.env()
    url = f"s3://{s3_server.new_bucket()}/store"
    _ok(run_cli("cas", "init", url, cwd=m.root, env=m.env))
    _ok(m.promote("store", "push", url))
    _ok(m.promote("db", "migrate", "--url", pg_empty_url))
    _ok(m.promote("ledger", "push", pg_empty_url))
    cfg = m.root / "control/promote/config.json"
    config = json.loads(cfg.read_bytes())
    config.update(store=url, ledger=pg_empty_url)
    cfg.write_bytes(pretty(config))
    _ok(m.promote("verify"))
    _ok(m.promote("ledger", "verify"))
    assert m.view_files() == before

    # the workspace now runs on the remote backends only
    _promote_n(m, 1, tag="remote")
    assert isinstance(m.ws.store, S3Store)
    other = make_machine(tmp_path / "other", pg_empty_url, store=url, mode="copy")
    other.env = m.env
    _ok(other.promote("checkout"))
    assert other.view_files() == m.view_files() == {**before, "release/remote0.txt": b"remote0"}
