"""Helpers for the ledger tests: workspaces ("machines"), capsules, synthetic entries.

A `Machine` is one promote workspace in its own directory, as a runner on its own host
would have: its config names the ledger (a directory or a postgresql:// URL) and the
store. Promotions go through the real `promote` console script.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import blake3
from helpers import run_cli

from cas.digest import ObjectRef
from cas.errors import CasError
from promote.attest.dsse import sign_envelope
from promote.attest.keys import load_private_key
from promote.attest.statement import CHECK_PREDICATE, PAYLOAD_TYPE, Statement, Subject
from promote.attest.trust import TRUST_PATH, load_trust
from promote.canonical import pretty
from promote.capsules import new_capsule
from promote.demo_keys import KEYS_DIR, key_path, write_demo_trust
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Entry, Head, build_entry, sign_entry
from promote.model import Change, State
from promote.verify import open_ledger
from promote.workspace import Workspace

__all__ = ["Machine", "commit_worker", "make_machine", "next_entry"]


@attrs.define
class Machine:
    root: Path
    env: dict[str, str] = attrs.Factory(dict)

    @property
    def ws(self) -> Workspace:
        return Workspace.load(self.root)

    def ledger(self) -> CommitBackend:
        return open_ledger(self.ws)

    def promote(
        self, *args: str | os.PathLike[str], **kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        env = {**self.env, **kw.pop("env", {})}
        return run_cli("promote", *args, cwd=self.root, env=env, **kw)

    def popen(self, *args: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Any:
        from helpers import clean_env, script

        return subprocess.Popen(
            [script("promote"), *map(str, args)],
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env({**self.env, **(env or {})}),
        )

    def put(self, data: bytes) -> ObjectRef:
        return self.ws.store.put_bytes(data)

    def capsule(
        self, targets: Mapping[str, bytes], name: str, base: str | None = "current"
    ) -> Path:
        """Put the artifacts and a passing CHECK attestation signed with the machine's
        checker key; write capsule `name`."""
        ws = self.ws
        refs = {p: ws.store.put_bytes(data) for p, data in targets.items()}
        check = sign_check(self.root, ws, list(targets.values()))
        ledger = open_ledger(ws)
        try:
            data = new_capsule(
                ws,
                ledger,
                [f"{p}={r.digest}" for p, r in refs.items()],
                None,
                base=base,
                attestations=[str(check.digest)],
            )
        finally:
            close = getattr(ledger, "close", None)
            if close:
                close()
        out = self.root / f"{name}.capsule.json"
        out.write_bytes(data)
        return out

    def view_files(self) -> dict[str, bytes]:
        """What the view shows: path -> bytes, for every file under the allow-list tops."""
        out = {}
        for top in sorted({p.split("/")[0] for p in self.ws.allow_list}):
            base = self.root / top
            for dirpath, _dirs, files in os.walk(base, followlinks=True):
                for f in files:
                    full = Path(dirpath, f)
                    out[full.relative_to(self.root).as_posix()] = full.read_bytes()
        return out


def sign_check(root: Path, ws: Workspace, blobs: list[bytes]) -> ObjectRef:
    """A passing CHECK predicate about `blobs`, signed with the checker key of the
    workspace at `root`, put into its store."""
    subjects = [
        Subject(
            f"artifact-{i}",
            (
                ("blake3", blake3.blake3(b).hexdigest()),
                ("sha256", hashlib.sha256(b).hexdigest()),
            ),
        )
        for i, b in enumerate(blobs)
    ]
    predicate = {"status": "pass", "checks": [{"name": "unit", "status": "pass"}]}
    statement = Statement.build(subjects, CHECK_PREDICATE, predicate)
    key = load_private_key(key_path(root, "checker"))
    return ws.store.put_bytes(sign_envelope(PAYLOAD_TYPE, statement.encode(), [key]).encode())


_SHARED_KEYS: list[Path] = []


def _shared_keys() -> Path:
    """One set of demo keys and trust roots for every machine of this test process,
    as a real deployment shares control/promote/trust.json (it is tracked) and
    hands each runner its keys."""
    if not _SHARED_KEYS:
        template = Path(tempfile.mkdtemp(prefix="promote-keys-"))
        write_demo_trust(template)
        _SHARED_KEYS.append(template)
    return _SHARED_KEYS[0]


def make_machine(
    root: Path, ledger: str, store: str | None = None, mode: str | None = None
) -> Machine:
    """A workspace at `root` whose config points at `ledger` (and `store`), trusting
    the keys every machine of this process shares."""
    template = _shared_keys()
    for rel in (TRUST_PATH, KEYS_DIR):
        src, dst = template / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    Workspace.init(root, mode=mode)
    cfg = root / "control/promote/config.json"
    config = json.loads(cfg.read_bytes())
    config["ledger"] = ledger
    if store is not None:
        config["store"] = store
    cfg.write_bytes(pretty(config))
    return Machine(root)


def next_entry(
    ledger: CommitBackend, ws: Workspace, path: str, data: bytes | None
) -> tuple[Entry, State]:
    """A synthetic next entry (after the current head) that points `path` at `data`
    (None: removes `path`): a v2 entry signed by the machine's runner key, pinning the
    workspace's trust roots, whose capsule, evidence, decision, policy and VSA are
    placeholders.

    Everything it references is put into the store, so the chain checks
    (`verify_ledger`) pass; re-justification (`verify_workspace`) finds every such
    entry `unjustified`: no gate made it.
    """
    store = ws.store
    head = ledger.head()
    state = load_state(store, head.state)
    ref = store.put_bytes(data) if data is not None else None
    change = Change(path, state.get(path), ref)
    after = state.apply([change])
    store.put_bytes(after.encode())
    docs = [
        store.put_bytes(pretty({"doc": k, "path": path, "data": data and data.hex()}))
        for k in "cedpv"
    ]
    trust = load_trust((ws.root / TRUST_PATH).read_bytes(), TRUST_PATH)
    unsigned = build_entry(
        head,
        capsule=docs[0],
        evidence=[docs[1]],
        decision=docs[2],
        policy=docs[3],
        trust=store.put_bytes(trust.encode()),
        vsa=docs[4],
        state_after=after.ref(),
        changes=[change],
    )
    entry = sign_entry(unsigned, load_private_key(key_path(ws.root, "runner")))
    return entry, after


def commit_worker(index: int, args: tuple[str, str, bytes, bytes, Any], results: Any) -> None:
    """In a child process: wait at the barrier, then commit; puts (index, outcome)."""
    from promote.ledger.entry import parse_entry
    from promote.model import State as StateCls

    root, spec, entry_bytes, state_bytes, barrier = args
    ws = Workspace.load(Path(root))
    os.environ["PROMOTE_LEDGER"] = spec
    ledger = open_ledger(ws)
    entry = parse_entry(entry_bytes)
    state = StateCls.from_dict(json.loads(state_bytes))
    base = Head(entry.seq - 1, None, ObjectRef.from_dict(entry.doc["state_before"]))
    if entry.doc["prev"]:
        from cas.digest import Digest

        base = attrs.evolve(base, entry=Digest.parse(entry.doc["prev"]))
    ledger.head()  # connected and ready before the barrier, so the commits really race
    barrier.wait()
    try:
        ledger.commit(base, entry, state)
        results.put((index, "won"))
    except CasError as e:
        results.put((index, f"{type(e).__name__}: {e}"))
