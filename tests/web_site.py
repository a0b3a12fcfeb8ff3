"""Helpers of the web view's tests (tests/web/): a workspace with a few real
promotions (the real console scripts, through tests/helpers.py), clients of the
application over it, and a real `promote serve` process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from helpers import Flow, clean_env, script

from promote.verify import open_ledger
from promote.web.app import create_app
from promote.web.data import Reader
from promote.workspace import Workspace

#: What the shared workspace holds: three releases, newest last.
RELEASES: list[tuple[dict[str, bytes], list[str]]] = [
    (
        {"release/app.txt": b"app 1.0.0\n", "release/lib/libx.so": b"libx 1\n"},
        ["--builder", "ci", "--source-revision", "v1.0.0"],
    ),
    ({"release/app.txt": b"app 1.1.0\n"}, ["--builder", "ci", "--source-revision", "v1.1.0"]),
    ({"release/docs/README": b"read me\n"}, ["--builder", "alice", "--source-revision", "v1.2.0"]),
]


def build_site(root: Path) -> Flow:
    flow = Flow.init(root)
    for files, extra in RELEASES:
        r = flow.release(files, *extra)
        assert r.returncode == 0, r.stderr.decode()
    return flow


def entry_doc(flow: Flow, seq: int) -> dict[str, Any]:
    path = flow.root / f"execution/ledger/entries/{seq:012d}.json"
    return json.loads(path.read_bytes())  # type: ignore[no-any-return]


def client_for(root: Path, serve_objects: bool = False, **kw: Any) -> Any:
    from starlette.testclient import TestClient

    reader = Reader(Workspace.load(root), open_ledger, serve_objects=serve_objects)
    return TestClient(create_app(reader, **kw), raise_server_exceptions=False)


class Served:
    """A real `promote serve` process on a free loopback port."""

    def __init__(self, root: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [script("promote"), "serve", "--root", str(root), "--bind", "127.0.0.1:0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"promote serve did not start: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.url = line.split(" at ", 1)[1].split(" ", 1)[0].rstrip("/")

    def stop(self) -> tuple[int, bytes]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err


def verify_problems(flow: Any) -> list[dict[str, Any]]:
    """What `promote verify` finds in the workspace of `flow` (anything with a
    `root`), as the view reports problems."""
    from promote.verify import verify_workspace

    ws = Workspace.load(flow.root)
    ledger = open_ledger(ws)
    try:
        return [p.to_dict() for p in verify_workspace(ws, ledger)]
    finally:
        close = getattr(ledger, "close", None)
        if close is not None:
            close()
