"""Helpers the tests import: running the real console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """The installed console script `name` of this environment."""
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    assert path, f"console script {name} is not installed"
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAS_", "PROMOTE_"))}
    env.update(extra or {})
    return env


def run_cli(
    name: str,
    *args: str | os.PathLike[str],
    cwd: Path,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run a real console script as a user would, capturing its output."""
    return subprocess.run(
        [script(name), *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=clean_env(env),
        timeout=timeout,
    )


class Flow:
    """A promote workspace driven through the real console scripts, as a builder would.

    `put` ingests bytes, `check` writes and ingests a CHECK report, `capsule` builds one
    with `promote capsule new`, and `promote` runs the gate.
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = env or {}
        self.n = 0

    @classmethod
    def init(cls, root: Path, *init_args: str, env: dict[str, str] | None = None) -> Flow:
        root.mkdir(parents=True, exist_ok=True)
        flow = cls(root, env)
        flow.ok("promote", "init", *init_args)
        return flow

    def run(
        self, name: str, *args: str | os.PathLike[str], input: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return run_cli(name, *args, cwd=self.root, input=input, env=self.env)

    def ok(self, name: str, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[bytes]:
        r = self.run(name, *args)
        assert r.returncode == 0, f"{name} {args}: exit {r.returncode}\n{r.stderr.decode()}"
        return r

    def put(self, data: bytes) -> tuple[str, int]:
        self.n += 1
        src = self.root / f".src-{self.n}"
        src.write_bytes(data)
        out = self.ok("cas", "put", src).stdout.decode().split("  ")
        src.unlink()
        return out[0], int(out[1])

    def check(
        self,
        subjects: list[tuple[str, int]],
        status: str = "pass",
        checks: list[tuple[str, str]] | None = None,
    ) -> str:
        import json

        doc = {
            "schema": "check-report/v1",
            "status": status,
            "subjects": [{"digest": d, "size": s} for d, s in subjects],
            "checks": [{"name": n, "status": s} for n, s in (checks or [("unit", "pass")])],
        }
        return self.put(json.dumps(doc).encode())[0]

    def capsule(
        self, targets: dict[str, str], check: str, *extra: str, name: str = "capsule.json"
    ) -> Path:
        args = [a for p, d in targets.items() for a in ("--target", f"{p}={d}")]
        self.ok("promote", "capsule", "new", *args, "--check-report", check, *extra, "-o", name)
        return self.root / name

    def release(self, files: dict[str, bytes], *extra: str) -> subprocess.CompletedProcess[bytes]:
        """Put `files`, check them, build a capsule and promote it."""
        refs = {p: self.put(b) for p, b in files.items()}
        check = self.check(list(refs.values()))
        cap = self.capsule({p: d for p, (d, _) in refs.items()}, check, *extra)
        return self.run("promote", cap)

    def snapshot(self) -> dict[str, bytes]:
        """Every file and link of the ledger, the view and its generations."""
        out: dict[str, bytes] = {}
        for base in ("execution/ledger", ".promote", "release"):
            top = self.root / base
            paths = [top] if top.is_symlink() else []
            if top.is_dir() and not top.is_symlink():
                paths = sorted(top.rglob("*"))
            for p in paths:
                rel = p.relative_to(self.root).as_posix()
                if p.is_symlink():
                    out[rel] = b"-> " + os.readlink(p).encode()
                elif p.is_file():
                    out[rel] = p.read_bytes()
        return out
