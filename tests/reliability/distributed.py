"""What the PostgreSQL and S3 rows of the reliability suite share: workspaces whose
ledger or store is remote, commands paused at a chosen moment, and a stand-in for a
network that drops a connection at COMMIT.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from helpers import clean_env
from reliability.scenario import HERE, Result

from promote.canonical import pretty

__all__ = ["CommitDropper", "Paused", "configure", "one_line"]

#: How long a paused command may take to reach its pause, or to end once resumed.
DEADLINE = 120.0

_serial = itertools.count()


def configure(root: Path, **changes: object) -> Path:
    """Set keys of the workspace's config (its `ledger`, its `store`, ...)."""
    cfg = root / "control/promote/config.json"
    config = json.loads(cfg.read_bytes())
    config.update(changes)
    cfg.write_bytes(pretty(config))
    if "store" in changes and str(changes["store"]).startswith("s3://"):
        shutil.rmtree(root / ".cas")  # the template's own store: not this workspace's
    return root


def one_line(r: Result | subprocess.CompletedProcess[bytes]) -> str:
    """The command's error: exactly one line, `prog: kind: ...`, no traceback."""
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(("promote: ", "cas: ")), err
    return err


class Paused:
    """A real CLI process, run through pause_launch.py, stopped at `where`."""

    def __init__(
        self,
        where: str,
        prog: str,
        *args: str | os.PathLike[str],
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.where = where
        n = next(_serial)
        self.out = cwd.parent / f".paused-{os.getpid()}-{n}.out"
        self.err = cwd.parent / f".paused-{os.getpid()}-{n}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "pause_launch.py"), where, prog, *map(str, args)],
                cwd=cwd,
                env=clean_env(dict(env or {})),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        if not self._wait(stopped=True):
            raise AssertionError(
                f"{prog} ended ({self.proc.returncode}) before reaching {where}:"
                f" {self.err.read_bytes().decode()[-2000:]}"
            )

    def _wait(self, stopped: bool) -> bool:
        """Until the process stops (when `stopped`) or ends; True when it stopped."""
        deadline = time.monotonic() + DEADLINE
        flags = os.WNOHANG | (os.WUNTRACED if stopped else 0)
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.proc.pid, flags)
            if pid == 0:
                time.sleep(0.01)
                continue
            if os.WIFSTOPPED(status):
                return True
            self.proc.returncode = os.waitstatus_to_exitcode(status)
            return False
        self.proc.kill()
        self.proc.wait()
        raise AssertionError(f"the command paused at {self.where} did not finish in time")

    def resume(self) -> Result:
        """SIGCONT, and its end."""
        os.kill(self.proc.pid, signal.SIGCONT)
        return self._end()

    def kill(self) -> Result:
        os.kill(self.proc.pid, signal.SIGKILL)
        return self._end()

    def _end(self) -> Result:
        while self._wait(stopped=False):  # pragma: no cover - it stops only once
            os.kill(self.proc.pid, signal.SIGCONT)
        result = Result(self.proc.returncode, self.out.read_bytes(), self.err.read_bytes())
        self.out.unlink()
        self.err.unlink()
        return result


#: psycopg sends COMMIT as a simple Query message: 'Q', length 11, "COMMIT\0".
COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"
#: What marks the transaction of a commit (the backend's other transactions, such as
#: its schema check, are let through).
LEDGER_INSERT = b"INSERT INTO promote_ledger"


class CommitDropper:
    """A STAND-IN for a network that fails at COMMIT: a loopback TCP proxy in front of
    the real PostgreSQL server that forwards every byte both ways, until it is armed.

    Armed with `drop("before")`, it closes the next connection that sends the COMMIT
    of a transaction that inserted a ledger entry, without forwarding it (the server rolls the transaction back). Armed with
    `drop("after")`, it forwards the COMMIT, waits for the server's answer, and
    closes the connection instead of passing the answer on: the commit happened, and
    the client cannot know. Each arming drops one connection.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.armed: str | None = None
        self.dropped = 0
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def url(self, dbname: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def drop(self, when: str) -> None:
        assert when in ("before", "after")
        self.armed = when

    def close(self) -> None:
        """Stop accepting, and close every connection (ending their pumps)."""
        for s in [self.listener, *self.sockets]:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.thread.join(10)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            state = {"reply": False, "insert": False}
            for src, dst, up in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, up, state, (client, server)), daemon=True
                ).start()

    def _take(self, when: str) -> bool:
        with self.lock:
            if self.armed != when:
                return False
            self.armed = None
            self.dropped += 1
            return True

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        up: bool,
        state: dict[str, bool],
        both: tuple[socket.socket, socket.socket],
    ) -> None:
        try:
            while data := src.recv(65536):
                if up and LEDGER_INSERT in data:
                    state["insert"] = True
                if up and COMMIT in data and state["insert"]:
                    state["insert"] = False
                    if self._take("before"):
                        break
                    if self._take("after"):
                        state["reply"] = True
                elif not up and state["reply"]:
                    break  # the server answered the COMMIT: the answer is lost
                dst.sendall(data)
        except OSError:
            pass
        for s in both:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@contextlib.contextmanager
def dropper(host: str, port: int) -> Iterator[CommitDropper]:
    proxy = CommitDropper(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
