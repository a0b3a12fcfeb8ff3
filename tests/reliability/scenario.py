"""Workspaces, capsules and processes for the reliability suite.

Set-up (putting artifacts, writing CHECK reports, building capsules) runs in-process
through the library; what a scenario attacks (the killed, raced or faulted command,
`promote recover`, and the checker's `cas fsck` and `promote verify`) runs as real
processes, either the installed console scripts or children of the zygote.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers import clean_env, run_cli  # noqa: E402

from cas.digest import ObjectRef  # noqa: E402
from promote.capsules import new_capsule  # noqa: E402
from promote.verify import open_ledger  # noqa: E402
from promote.workspace import Workspace  # noqa: E402

__all__ = ["Result", "Zygote", "copy_workspace", "loop_step", "prepare", "put"]


@attrs.frozen
class Result:
    returncode: int
    stdout: bytes
    stderr: bytes


def copy_workspace(template: Path, dest: Path) -> Path:
    """A fresh workspace: a copy of an initialised template (links kept as links)."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


def init_template(dest: Path, mode: str) -> Path:
    dest.mkdir(parents=True)
    args = ["init"] + (["--mode", mode] if mode != "symlink" else [])
    r = run_cli("promote", *args, cwd=dest)
    assert r.returncode == 0, r.stderr
    return dest


def put(root: Path, data: bytes) -> ObjectRef:
    return Workspace.load(root).store.put_bytes(data)


def prepare(
    root: Path,
    files: Mapping[str, bytes],
    name: str = "capsule",
    guards: bool = True,
    check_subjects: Sequence[ObjectRef] | None = None,
) -> Path:
    """Put `files` and a passing CHECK attestation; write a capsule for them.

    With `guards`, the capsule carries `--expect-current` and `--base current`, so it
    can succeed once at most.
    """
    ws = Workspace.load(root)
    refs = {p: ws.store.put_bytes(b) for p, b in files.items()}
    subjects = list(check_subjects) if check_subjects is not None else list(refs.values())
    # a passing CHECK predicate about the subjects, signed with the demo checker key
    from promote.attest.dsse import sign_envelope
    from promote.attest.keys import load_private_key
    from promote.attest.statement import CHECK_PREDICATE, PAYLOAD_TYPE, Statement, Subject
    from promote.demo_keys import key_path

    statement = Statement.build(
        [Subject(str(r.digest), (("blake3", r.digest.hex),)) for r in subjects],
        CHECK_PREDICATE,
        {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]},
    )
    key = load_private_key(key_path(root, "checker"))
    check = ws.store.put_bytes(sign_envelope(PAYLOAD_TYPE, statement.encode(), [key]).encode())
    ledger = open_ledger(ws)  # the workspace's own: a directory or PostgreSQL
    try:
        data = new_capsule(
            ws,
            ledger,
            [f"{p}={r.digest}" for p, r in refs.items()],
            None,
            expect_current=guards,
            base="current" if guards else None,
            attestations=[str(check.digest)],
        )
    finally:
        close = getattr(ledger, "close", None)
        if close is not None:
            close()
    out = root / f"{name}.json"
    out.write_bytes(data)
    return out


def loop_step(rng: random.Random, i: int, spec: Mapping[str, Any]) -> None:
    """One step of the random-kill loop: a put of fresh bytes, or a whole promotion."""
    from promote.gate import promote

    root = Path(spec["root"])
    if rng.random() < 0.4:
        src = root / f".loop-src-{os.getpid()}"
        src.write_bytes(rng.randbytes(rng.choice([0, 10, 5000, 200_000])))
        ws = Workspace.load(root)
        ref = ws.store.put_file(src)
        _ack(spec, ref)
        return
    paths = rng.sample(["release/a", "release/b", "release/sub/c", "release/d"], rng.randint(1, 3))
    files = {p: f"{p} {spec['seed']} {i} {rng.random()}".encode() for p in paths}
    cap = prepare(root, files, name=f".loop-capsule-{os.getpid()}")
    ws = Workspace.load(root)
    outcome = promote(ws, open_ledger(ws), str(cap))
    assert outcome.exit_code in (0, 5), outcome.reasons


def _ack(spec: Mapping[str, Any], ref: ObjectRef) -> None:
    """Record an acknowledged put: it must survive the kill that follows."""
    with open(spec["acks"], "a") as f:
        f.write(str(ref.digest) + "\n")


class Zygote:
    """The client side of `zygote.py`: fork real CLI processes, race and kill them."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        scratch.mkdir(parents=True, exist_ok=True)
        self.n = 0
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "zygote.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=clean_env({"PYTHONPATH": str(HERE.parent)}),
            cwd=scratch,
        )

    def close(self) -> None:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self.proc.stdout.close()

    def _reply(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the zygote died")
        return json.loads(line)

    def run_many(
        self,
        jobs: Sequence[Mapping[str, Any]],
        kill_after: Sequence[float | None] | None = None,
    ) -> list[Result]:
        """Start every job at once; SIGKILL job i after kill_after[i] seconds."""
        full = []
        for job in jobs:
            self.n += 1
            full.append(
                {
                    "prog": job.get("prog", "promote"),
                    "argv": [str(a) for a in job.get("argv", [])],
                    "cwd": str(job["cwd"]),
                    "env": dict(job.get("env") or {}),
                    "loop": job.get("loop"),
                    "out": str(self.scratch / f"{self.n}.out"),
                    "err": str(self.scratch / f"{self.n}.err"),
                }
            )
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"jobs": full}) + "\n").encode())
        self.proc.stdin.flush()
        pids = self._reply()["pids"]
        if kill_after:
            start = time.monotonic()
            for delay, pid in sorted(
                ((d, p) for d, p in zip(kill_after, pids, strict=True) if d is not None),
                key=lambda t: t[0],
            ):
                time.sleep(max(0.0, start + delay - time.monotonic()))
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        status = self._reply()["status"]
        out = []
        for job, code in zip(full, status, strict=True):
            out.append(Result(code, _take(Path(job["out"])), _take(Path(job["err"]))))
        return out

    def run(self, prog: str, *argv: str | os.PathLike[str], cwd: Path, **kw: Any) -> Result:
        return self.run_many([{"prog": prog, "argv": argv, "cwd": cwd, **kw}])[0]


def real(prog: str, *argv: str | os.PathLike[str], cwd: Path, **kw: Any) -> Result:
    """The installed console script, as a user runs it."""
    r = run_cli(prog, *argv, cwd=cwd, **kw)
    return Result(r.returncode, r.stdout, r.stderr)


def _take(path: Path) -> bytes:
    """Read and remove a child's output (absent when it was killed before it began)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return b""
    path.unlink()
    return data


def entries(root: Path) -> list[bytes]:
    d = root / "execution/ledger/entries"
    return [p.read_bytes() for p in sorted(d.glob("[0-9]*.json"))]
