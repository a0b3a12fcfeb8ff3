"""Crashes with the store in S3 (the session's real SeaweedFS, tests/servers.py).

Invariant, as for the local store (test_crash.py): a crash at any moment loses and
corrupts nothing. An S3 store has no file to leave half written; what can fail is the
process (SIGKILL at every crash step of a promotion) and the server, which is killed
(SIGKILL) and started again on the same data while a command is paused just before
an S3 request:

* mid-put: before the one PutObject of a small put;
* mid-multipart: before the second UploadPart, before CompleteMultipartUpload, and
  before the CopyObject that places the finished temp object under its name;
* mid-fsck: before one of its GetObjects.

The server comes back either before the command goes on (it then succeeds: the S3
client retries on a fresh connection) or after it (it then fails in one line, exit
1). Either way no object is ever partial or misnamed, every acknowledged put is
there, and a retry succeeds; the checker (checker.py, reading the bucket itself)
runs after each.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from reliability.checker import check, count
from reliability.distributed import Paused, configure, one_line
from reliability.scenario import Zygote, prepare
from servers import S3Server

from cas.s3 import S3Store

#: step -> whether the promotion has happened once the process died there. A small
#: put (every object of a promotion) is one PutObject straight to its name, so it
#: reaches only `put.renamed`.
S3_STEPS = {
    "put.renamed:1": False,  # the capsule
    "put.renamed:2": False,
    "promote.decision-stored": False,
    "promote.state-stored": False,
    "commit.before": False,
    "commit.after": True,
    "commit.head-written": True,
    "view.building": True,
    "view.file-copied:2": True,
}
#: A multipart put: more than the 8 MiB threshold, two parts of 8 MiB.
BIG = 9 << 20

MakeS3 = Callable[[], Path]


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The server's AWS variables, set here too (the in-process set-up puts objects)."""
    env = s3_server.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def make_s3_ws(make_ws, s3_server: S3Server, s3_env: dict[str, str]) -> MakeS3:
    """A fresh copy-mode workspace whose store is a fresh bucket of the server."""

    def make() -> Path:
        url = f"s3://{s3_server.new_bucket()}/ws"
        S3Store.init(url, client=s3_server.client())
        return configure(make_ws("copy"), store=url)

    return make


def _attempts(env: dict[str, str], back: bool) -> dict[str, str]:
    """With the server to stay down, one attempt per request (AWS_MAX_ATTEMPTS, the
    standard variable): the default's retries would only add their back-off."""
    return env if back else {**env, "AWS_MAX_ATTEMPTS": "1"}


def _released(root: Path, cli: Zygote, env: dict[str, str]) -> Path:
    cap = prepare(root, {"release/a": b"a1", "release/b": b"b1"}, name="first")
    r = cli("promote", cap, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return prepare(root, {"release/a": b"a2", "release/sub/c": b"c2"}, name="second")


@pytest.mark.parametrize("step", list(S3_STEPS))
def test_kill_promote_at_every_step(
    make_s3_ws: MakeS3, cli: Zygote, s3_env: dict[str, str], step: str
) -> None:
    """Invariant: promote SIGKILLed at STEP with the store in S3: the promotion never
    happened or happened whole, and recover then the capsule again converge."""
    root = make_s3_ws()
    cap = _released(root, cli, s3_env)
    r = cli("promote", cap, cwd=root, env={**s3_env, "CAS_CRASH_AT": step})
    assert r.returncode == -9, (r.returncode, r.stderr)
    count("crash-s3", "cases")
    committed = S3_STEPS[step]
    check(root, cli, category="crash-s3", view="any", env=s3_env)
    rec = cli("promote", "recover", cwd=root, env=s3_env)
    assert rec.returncode == 0, rec.stderr
    check(root, cli, category="crash-s3", env=s3_env)
    again = cli("promote", cap, cwd=root, env=s3_env)
    assert again.returncode == (5 if committed else 0), again.stderr
    report = check(root, cli, category="crash-s3", env=s3_env)
    assert report.head_seq == 2


PUTS = [
    ("PutObject:1", 1000),
    ("UploadPart:2", BIG),
    ("CompleteMultipartUpload:1", BIG),
    ("CopyObject:1", BIG),
]
CASES = [(op, size, True) for op, size in PUTS] + [(op, size, False) for op, size in PUTS[:2]]


@pytest.mark.parametrize(
    ("op", "size", "back"),
    CASES,
    ids=[f"{op.split(':')[0]}-{'restarted' if b else 'down'}" for op, _, b in CASES],
)
def test_server_killed_mid_put(
    make_s3_ws: MakeS3,
    cli: Zygote,
    s3_server: S3Server,
    s3_env: dict[str, str],
    op: str,
    size: int,
    back: bool,
) -> None:
    """Invariant: SeaweedFS is killed as `cas put` is about to send OP. Restarted
    before the put goes on (`back`), the put succeeds and its object is whole;
    still down, the put fails in one line (exit 1) and leaves no object. Then a put
    of the same bytes succeeds, and every object put before the kill survived it."""
    assert s3_server.weed is not None
    root = make_s3_ws()
    _released(root, cli, s3_env)  # a promotion before the kill: its objects must survive
    src = root / "artifact"
    src.write_bytes(os.urandom(size))
    paused = Paused(f"s3:{op}", "cas", "put", src, cwd=root, env=_attempts(s3_env, back))
    s3_server.weed.kill()
    if back:
        s3_server.weed.start()
    r = paused.resume()
    if not back:
        s3_server.weed.start()
    count("crash-s3", "cases")
    count("crash-s3", "server kills")
    if back:
        assert r.returncode == 0, r.stderr
        acked = [r.stdout.split()[0].decode()]
    else:
        assert r.returncode == 1, r.stderr
        assert "cannot reach the S3 endpoint" in one_line(r), r.stderr
        acked = []
    check(root, cli, category="crash-s3", env=s3_env, acked=acked)
    again = cli("cas", "put", src, cwd=root, env=s3_env)
    assert again.returncode == 0, again.stderr
    check(root, cli, category="crash-s3", env=s3_env, acked=[again.stdout.split()[0].decode()])


@pytest.mark.parametrize("back", [True, False], ids=["restarted", "down"])
def test_server_killed_mid_fsck(
    make_s3_ws: MakeS3, cli: Zygote, s3_server: S3Server, s3_env: dict[str, str], back: bool
) -> None:
    """Invariant: SeaweedFS is killed while `cas fsck` re-hashes the store. Restarted
    before fsck goes on, fsck finishes and finds the store clean (exit 0); still
    down, fsck fails in one line (exit 1): an unreachable server is no damage, so
    it is never exit 3, and nothing is quarantined or changed."""
    assert s3_server.weed is not None
    root = make_s3_ws()
    cap = _released(root, cli, s3_env)
    assert cli("promote", cap, cwd=root, env=s3_env).returncode == 0
    paused = Paused(
        "s3:GetObject:3", "cas", "fsck", "--json", cwd=root, env=_attempts(s3_env, back)
    )
    s3_server.weed.kill()
    if back:
        s3_server.weed.start()
    r = paused.resume()
    if not back:
        s3_server.weed.start()
    count("crash-s3", "cases")
    count("crash-s3", "server kills")
    doc = json.loads(r.stdout)
    if back:
        assert r.returncode == 0, r.stderr
        assert doc["problems"] == []
    else:  # not one "unreadable" problem per object left: the objects are not at fault
        assert (r.returncode, r.stderr) == (1, b"")
        assert doc["error"]["exit_code"] == 1
        assert "cannot reach the S3 endpoint" in doc["error"]["message"]
    report = check(root, cli, category="crash-s3", env=s3_env)
    assert report.head_seq == 2


def test_random_kills_during_puts_and_promotions(
    make_s3_ws: MakeS3, zygote: Zygote, s3_env: dict[str, str], tmp_path: Path
) -> None:
    """Invariant: SIGKILL at a random moment of a loop of puts and promotions with the
    store in S3, then recovery: a consistent workspace, no acknowledged put lost."""
    rng = random.Random("kills-s3")
    cli = zygote.run
    root = make_s3_ws()
    acks = tmp_path / "acks"
    acks.touch()
    for i in range(10):
        spec = {"root": str(root), "seed": f"s3-{i}", "acks": str(acks)}
        job = {"cwd": root, "loop": spec, "env": s3_env}
        r = zygote.run_many([job], kill_after=[rng.uniform(0.05, 0.4)])[0]
        assert r.returncode == -9, r.stderr.decode()[-2000:]
        count("crash-s3", "cases")
        acked = sorted(set(acks.read_text().split()))
        check(root, cli, category="crash-s3", view="any", acked=acked, env=s3_env)
        rec = cli("promote", "recover", cwd=root, env=s3_env)
        assert rec.returncode == 0, rec.stderr
        check(root, cli, category="crash-s3", acked=acked, env=s3_env)
