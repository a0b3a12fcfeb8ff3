"""A real PostgreSQL server for the tests: Debian `postgresql-15`, started per session.

`initdb` into a fresh temp directory, then `pg_ctl start` on a free loopback port with
its unix socket inside that directory (nothing of the system's PostgreSQL is used or
touched). initdb refuses to run as root, so as root the directory is chowned to the
`postgres` user and every server command runs as that user. Authentication is
`trust`, which is fine for a server that listens on 127.0.0.1 only and lives as long
as the test session.

When the server cannot start, `postgresql()` raises: the tests that need it fail
loudly, never skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["PgControl", "PgServer", "pg_bindir", "postgresql"]

START_TIMEOUT = 60
SUPERUSER = "postgres"


@attrs.frozen
class PgServer:
    """A running PostgreSQL server; databases are made per test with `new_database`."""

    host: str
    port: int
    user: str = SUPERUSER
    #: The server's own commands, to restart it (None for an address only).
    control: PgControl | None = attrs.field(default=None, eq=False, repr=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kw: Any) -> Any:
        import psycopg

        return psycopg.connect(self.url(dbname), autocommit=True, **kw)

    def restart(self) -> None:
        """Crash and restart the server on the same port and data: `pg_ctl stop -m
        immediate` (no shutdown checkpoint; every backend dies at once, as in a crash),
        then start, which replays the WAL. Connections open before are gone."""
        assert self.control is not None, "not a server these tests started"
        self.control.restart()

    def new_database(self) -> str:
        """A fresh, empty database (no promote schema); returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def pg_bindir() -> Path:
    """Where initdb and pg_ctl live: `$PG_BINDIR`, else Debian's newest major."""
    env = os.environ.get("PG_BINDIR")
    candidates = [Path(env)] if env else []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        candidates += [p / "bin" for p in reversed(majors)]
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for c in candidates:
        if (c / "initdb").exists() and (c / "pg_ctl").exists():
            return c
    raise RuntimeError(
        "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or"
        " on PATH): install Debian's postgresql-15 (.ci/run does) or set PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Runner:
    """Runs the server's commands as the `postgres` user when we are root."""

    def __init__(self) -> None:
        self.as_user: str | None = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise RuntimeError(
                    "running as root, and there is no 'postgres' user to run PostgreSQL"
                    " as (initdb refuses root): install postgresql-15, which creates it"
                ) from None
            self.as_user = SUPERUSER

    def chown(self, path: Path) -> None:
        if self.as_user:
            shutil.chown(path, self.as_user, self.as_user)

    def run(self, cmd: list[str], cwd: Path, timeout: float = START_TIMEOUT) -> None:
        kw: dict[str, Any] = {}
        if self.as_user:
            kw = {"user": self.as_user, "group": self.as_user, "extra_groups": []}
        proc = subprocess.run(
            cmd,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"},
            **kw,
        )
        if proc.returncode != 0:
            out = (proc.stdout + proc.stderr).decode(errors="replace").strip()
            raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}):\n{out}")


@attrs.frozen
class PgControl:
    """`pg_ctl` for one server: its binaries, data directory, log and options."""

    bindir: Path
    runner: _Runner
    top: Path
    options: str

    @property
    def data(self) -> Path:
        return self.top / "data"

    def _pg_ctl(self, *args: str, timeout: float = START_TIMEOUT + 10) -> None:
        self.runner.run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
            cwd=self.top,
            timeout=timeout,
        )

    def start(self) -> None:
        log = self.top / "server.log"
        try:
            self._pg_ctl(
                "-l", str(log), "-o", self.options, "-w", "-t", str(START_TIMEOUT), "start"
            )
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            raise RuntimeError(f"PostgreSQL did not start: {e}\n{_log_tail(log)}") from None

    def stop(self) -> None:
        """Immediate: no shutdown checkpoint (a crash, as far as the data knows)."""
        self._pg_ctl("-m", "immediate", "-w", "stop", timeout=START_TIMEOUT)

    def restart(self) -> None:
        self.stop()
        self.start()


def _kill_postmaster(data: Path) -> None:
    """The last resort when `pg_ctl stop` failed: SIGQUIT the postmaster by its PID."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def postgresql() -> Iterator[PgServer]:
    """initdb, start on a free 127.0.0.1 port, yield, stop and remove everything.

    The directory is made with `tempfile.mkdtemp` in the system temp dir rather than
    under pytest's (which is private to root, so `postgres` could not enter it).

    Raises:
        RuntimeError: PostgreSQL is missing, or the server did not start (with its log).
    """
    bindir = pg_bindir()
    runner = _Runner()
    top = Path(tempfile.mkdtemp(prefix="cas-pg-"))
    data = top / "data"
    started = False
    try:
        runner.chown(top)
        runner.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=top,
        )
        port = _free_port()
        options = " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={top}",
                "-c max_connections=100",
                "-c shared_buffers=32MB",
                # the tests crash processes (the reliability suite crashes this server
                # too), they do not cut the power: what a COMMIT wrote reaches the
                # kernel and survives them, without waiting for the disk
                "-c fsync=off",
            ]
        )
        control = PgControl(bindir, runner, top, options)
        control.start()
        started = True
        server = PgServer("127.0.0.1", port, control=control)
        with server.connect() as conn:  # ready, and reachable over TCP as the tests use it
            conn.execute("SELECT 1")
        yield server
    finally:
        if started:
            try:
                # immediate: no shutdown checkpoint, the data is thrown away anyway
                control.stop()
            except (RuntimeError, subprocess.TimeoutExpired):
                _kill_postmaster(data)
        shutil.rmtree(top, ignore_errors=True)
