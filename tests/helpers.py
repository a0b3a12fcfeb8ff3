"""Helpers the tests import: running the real console scripts."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from promote.attest.statement import CHECK_PREDICATE
from promote.attest.trust import TRUST_PATH
from promote.ledger.files import FileLedger
from promote.workspace import Workspace

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

    `put` ingests bytes, `check` signs a CHECK predicate with the workspace's demo
    checker key and puts the envelope, `capsule` builds one with `promote capsule new`,
    and `promote` runs the gate.
    """

    def __init__(self, root: Path, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.env = env or {}
        self.n = 0

    @classmethod
    def init(
        cls,
        root: Path,
        *init_args: str,
        env: dict[str, str] | None = None,
        keys_from: Flow | None = None,
    ) -> Flow:
        """`promote init` a workspace at `root`; with `keys_from`, one that trusts, and
        holds, that workspace's demo keys (as machines sharing a ledger would)."""
        root.mkdir(parents=True, exist_ok=True)
        if keys_from is not None:
            (root / "control/promote").mkdir(parents=True, exist_ok=True)
            shutil.copy2(keys_from.root / TRUST_PATH, root / TRUST_PATH)
            shutil.copytree(keys_from.root / ".promote/keys", root / ".promote/keys")
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
        key: str = "checker",
    ) -> str:
        """Sign a CHECK predicate about `subjects` with the workspace's demo `key` (a
        role's key in .promote/keys, or a path) and put the envelope; its digest.

        Subjects name the object by BLAKE3, and by SHA-256 too when it is in the store.
        """
        predicate = {
            "status": status,
            "checks": [{"name": n, "status": s} for n, s in (checks or [("unit", "pass")])],
        }
        return self.attest(subjects, CHECK_PREDICATE, predicate, key=key)

    def attest(
        self,
        subjects: list[tuple[str, int]],
        predicate_type: str,
        predicate: dict[str, object],
        key: str = "checker",
        keys: list[str] | None = None,
    ) -> str:
        """Sign an in-toto statement (by `keys`, default [`key`]) and put it; its digest."""
        from promote.attest.dsse import sign_envelope
        from promote.attest.keys import load_private_key
        from promote.attest.statement import PAYLOAD_TYPE, Statement, Subject

        store = Workspace.load(self.root).store
        subs = []
        for digest, _size in subjects:
            hexd = digest.removeprefix("blake3:")
            pairs = [("blake3", hexd)]
            from cas.digest import Digest

            if store.has(Digest.parse(digest)):
                pairs.append(
                    ("sha256", hashlib.sha256(store.read_bytes(Digest.parse(digest))).hexdigest())
                )
            subs.append(Subject(digest, tuple(pairs)))
        statement = Statement.build(subs, predicate_type, predicate)
        signing = [load_private_key(self.key_path(k)) for k in (keys or [key])]
        envelope = sign_envelope(PAYLOAD_TYPE, statement.encode(), signing)
        return self.put(envelope.encode())[0]

    def key_path(self, key: str) -> Path:
        """A role's demo key (`checker`), or a key file relative to the workspace."""
        if "/" in key or key.endswith(".pem"):
            return self.root / key
        return self.root / ".promote/keys" / f"{key}.pem"

    def check_v1(
        self,
        subjects: list[tuple[str, int]],
        status: str = "pass",
        checks: list[tuple[str, str]] | None = None,
    ) -> str:
        """An unsigned check-report/v1 in the store (the evidence of a v1 capsule)."""
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
        """`promote capsule new` naming `check` as its (one) attestation."""
        args = [a for p, d in targets.items() for a in ("--target", f"{p}={d}")]
        self.ok("promote", "capsule", "new", *args, "--attestation", check, *extra, "-o", name)
        return self.root / name

    def capsule_v1(
        self, targets: dict[str, str], report: str, *extra: str, name: str = "capsule.json"
    ) -> Path:
        """A promote-capsule/v1 whose evidence is the unsigned CHECK report `report`."""
        args = [a for p, d in targets.items() for a in ("--target", f"{p}={d}")]
        self.ok("promote", "capsule", "new", *args, "--check-report", report, *extra, "-o", name)
        return self.root / name

    def control(self, *keys: str) -> subprocess.CompletedProcess[bytes]:
        """Promote the workspace's policy and trust roots (`promote control`), signed
        by the demo admin key unless `keys` are given; must succeed."""
        args = [a for k in keys for a in ("--key", self.key_path(k))]
        return self.ok("promote", "control", *args)

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


def tree_snapshot(base: Path) -> dict[str, tuple[int, bytes | str | None]]:
    """Every entry under `base`, links not followed: its mode and its bytes (files) or
    link text, to show that nothing under `base` changed."""
    import stat

    out: dict[str, tuple[int, bytes | str | None]] = {}
    for dirpath, dirs, files in os.walk(base):
        for name in dirs + files:
            p = Path(dirpath, name)
            st = os.lstat(p)
            body: bytes | str | None = None
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            out[p.relative_to(base).as_posix()] = (st.st_mode, body)
    return out


class CountingLedger(FileLedger):
    """The workspace's file ledger, noting which entries are read."""

    def __init__(self, ws: Workspace) -> None:
        super().__init__(ws.ledger_dir, ws.store)
        self.seqs: list[int] = []

    def read(self, seq: int) -> bytes:
        self.seqs.append(seq)
        return super().read(seq)
