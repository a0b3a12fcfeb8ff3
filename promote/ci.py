"""The gate where changes are reviewed: pre-commit, CI, and this repository itself.

A promotion changes what may live in git: the ledger (`execution/ledger/`) and, in
copy mode, the authoritative files. An ad-hoc commit changes the files without a
ledger entry that puts them there. Three checks catch it:

- `verify_chain(ledger)`: the ledger checks of `promote ledger verify` that need no
  store: every entry canonical and well formed, seq numbers consecutive, every `prev`
  the hash of the entry before, the replay of the changes giving every
  `state_before` and `state_after` digest (a pointer state's digest is the hash of
  its canonical JSON, so the replay computes it without reading the store), and HEAD
  naming the last entry and its state. Given a store it also checks every object the
  entries reference, which is exactly `promote ledger verify`.
- `verify_tree(ws, ledger)`: the chain, then the tree against the replayed head state.
  In copy mode every file under the allow-list must hold exactly the bytes the head
  points at, none may be missing and none extra. In symlink mode the view is derived
  local state that is never committed, so the tree may hold nothing under the
  allow-list but promote's own links.
- `staged_workspaces(repo)`: the same on what is about to be committed (the git
  index, checked out into a temp dir), for the `promote-verify` pre-commit hook.

What the store-free checks prove: the tree is exactly what the ledger's last entry
says, the ledger is one unbroken, replayable hash chain, its head pins the trust roots
the tree holds, and the entries made under them are signed by one of their runners
(a hand-forged entry is not). What they do not prove: that the objects an entry names
(capsule, evidence, decision) exist and justify it. With a store (`verify-tree` uses
the workspace's when it can read it, `verify-chain --store`), every entry is
re-justified (`promote.justify`), as `promote ledger verify` does. A truncated ledger
(last entries dropped together with HEAD) is a consistent chain; a checkpoint kept
elsewhere catches it (`promote ledger verify --checkpoint FILE`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from cas.backend import ObjectStore, Problem
from cas.digest import Digest, ObjectRef, hash_bytes
from cas.errors import CasError, ObjectMissing, UsageError
from cas.fsutil import atomic_write, makedirs_durable
from cas.stores import CONFIG_PATH
from promote.ledger.backend import CommitBackend
from promote.ledger.files import FileLedger
from promote.model import State
from promote.workspace import Workspace

__all__ = [
    "WORKFLOW_PATH",
    "EmptyStore",
    "staged_workspaces",
    "signature_problems",
    "tree_ledger",
    "tree_store",
    "verify_chain",
    "verify_tree",
    "workflow",
    "write_workflow",
]

WORKFLOW_PATH = PurePosixPath(".github/workflows/promote-gate.yml")


class EmptyStore(ObjectStore):
    """A store that holds nothing: for the checks that must not need one."""

    location = "(no store)"

    def has(self, digest: Digest) -> bool:
        return False

    def put(self, source: BinaryIO) -> ObjectRef:
        raise UsageError("this check reads no store and writes none")

    def raw_chunks(self, digest: Digest) -> Iterator[bytes]:
        raise ObjectMissing(digest)

    def iterate(self) -> Iterator[Digest]:
        return iter(())

    def delete(self, digest: Digest) -> None:
        raise ObjectMissing(digest)

    def size(self, digest: Digest) -> int:
        raise ObjectMissing(digest)

    def fsck(
        self, quarantine: bool = False, progress: Callable[[int, int], None] | None = None
    ) -> list[Problem]:
        return []


def verify_chain(
    ledger: CommitBackend, store: ObjectStore | None = None, *, allow_unsigned: bool = False
) -> tuple[list[Problem], State | None]:
    """The ledger checks; without `store`, all but those of the referenced objects and
    the re-justification of the entries (which reads them).

    Returns the problems and the replayed head state (None when the chain is broken).
    """
    from promote.justify import justify_ledger
    from promote.verify import verify_ledger

    problems, state, _ = verify_ledger(ledger, store or EmptyStore())
    if store is None:
        # Against the empty store every referenced object is "missing"; nothing else is.
        problems = [p for p in problems if p.kind != "missing"]
    elif state is not None:
        problems += justify_ledger(ledger, store, allow_unsigned=allow_unsigned)
    return sorted(problems), state


def tree_store(ws: Workspace) -> ObjectStore | None:
    """The workspace's store when it can be read here (a local store that exists, or
    a remote one the config or `CAS_STORE` names), else None: `verify-tree` then
    checks the entries' signatures only (`signature_problems`)."""
    from cas.local import LocalStore

    try:
        store = ws.store
    except CasError:
        return None
    if isinstance(store, LocalStore) and not store.root.is_dir():
        return None
    return store


def signature_problems(ws: Workspace, ledger: CommitBackend) -> list[Problem]:
    """Without a store: the trust roots the ledger's head pins must be the workspace's
    `control/promote/trust.json` (tracked, so in the tree), and every entry made while
    those were pinned must carry a signature by one of its runners. Entries from
    before the last trust change need the store (the trust roots they were made
    under): `promote ledger verify` checks them."""
    from promote.attest.trust import TRUST_PATH
    from promote.ledger.entry import entry_signature_ok, parse_entry
    from promote.pins import workspace_trust

    try:
        trust = workspace_trust(ws)
        head = ledger.head()
        entries = [parse_entry(ledger.read(seq)) for seq in range(1, head.seq + 1)]
    except CasError as e:
        return [Problem("unjustified", "ledger", f"cannot check the signatures: {e}")]
    if not entries:
        return []
    ours = hash_bytes(trust.encode())
    last = entries[-1]
    if last.version == 1:
        return [
            Problem("unsigned", f"ledger entry {last.seq}", "unsigned (promote-ledger-entry/v1)")
        ]
    if last.trust != ours:
        assert last.trust is not None
        return [
            Problem(
                "unjustified",
                "ledger HEAD",
                f"pins trust roots {last.trust.digest}, not {TRUST_PATH} ({ours.digest}):"
                " a trust change without a control promotion, or a rewritten ledger",
            )
        ]
    problems = []
    for i in range(len(entries) - 1, -1, -1):
        entry = entries[i]
        before = entries[i - 1].trust if i else entry.trust
        if entry.version == 1 or before != ours:
            break
        try:
            entry_signature_ok(entry, trust)
        except CasError as e:
            problems.append(
                Problem("unjustified", f"ledger entry {entry.seq}", str(e).split(": ", 1)[-1])
            )
    return problems


def tree_ledger(ws: Workspace) -> CommitBackend:
    """The workspace's ledger, opened without opening its store.

    A directory ledger is read from the workspace's tree (which may be a checkout of
    the git index); a PostgreSQL ledger is the live one.
    """
    spec = os.environ.get("PROMOTE_LEDGER") or ws.ledger_spec
    if "://" in spec:
        from promote.verify import open_ledger

        return open_ledger(ws)
    return FileLedger(ws.root / spec, EmptyStore())


def tree_problems(ws: Workspace, state: State) -> list[Problem]:
    """How the tree under the allow-list differs from `state`, without the store."""
    from promote.view import View

    view = View(ws)
    if ws.view_mode == "copy":
        return view.problems(state, state.ref())  # copy mode re-hashes files only
    out = []
    for top in view.tops:
        path = ws.view_root / top
        want = os.path.relpath(view.current / top, ws.view_root)
        if path.is_symlink():
            if os.readlink(path) != want:
                out.append(Problem("unpromoted", top, f"a link to {os.readlink(path)}, not {want}"))
        elif path.exists():
            out.append(
                Problem(
                    "unpromoted",
                    top,
                    "files in a symlink-mode view: only promote's link belongs here",
                )
            )
    return out


def verify_tree(
    ws: Workspace, ledger: CommitBackend, store: ObjectStore | None = None
) -> list[Problem]:
    """The chain, then the tree under the allow-list against the replayed head state.

    With `store`, every entry is re-justified as `promote ledger verify` does; without
    one, the entries made under the workspace's trust roots must carry a runner's
    signature (`signature_problems`)."""
    problems, state = verify_chain(ledger)
    if state is not None:
        if store is not None:
            from promote.justify import justify_ledger

            problems += justify_ledger(ledger, store)
        else:
            problems += signature_problems(ws, ledger)
        problems += tree_problems(ws, state)
    return sorted(problems)


# -- the git index ------------------------------------------------------------------


def _git(cwd: Path, *args: str, input: bytes | None = None) -> bytes:
    try:
        r = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True)
    except FileNotFoundError:
        raise UsageError("git is not installed") from None
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()
        raise UsageError(f"git {args[0]}: {msg[-1] if msg else f'exit {r.returncode}'}")
    return r.stdout


def git_root(start: Path) -> Path:
    """The top of the git work tree holding `start`.

    Raises:
        UsageError: outside a git work tree.
    """
    return Path(_git(start, "rev-parse", "--show-toplevel").decode().strip())


def _staged(repo: Path, pathspecs: list[str]) -> list[str]:
    out = _git(repo, "ls-files", "-z", "--cached", "--", *pathspecs)
    return sorted({p for p in out.decode().split("\0") if p})


@contextlib.contextmanager
def staged_workspaces(
    repo: Path, only: Path | None = None
) -> Iterator[list[tuple[str, Workspace, Workspace]]]:
    """Every workspace in the git index, checked out into a temp dir.

    Yields `(prefix, real, staged)` per workspace: its directory relative to the
    repository (`""` or ending in `/`), the workspace in the work tree, and the one
    in the temp checkout of the index (config, ledger, and the tree under the
    allow-list exactly as they would be committed). `only` restricts it to one.
    """
    repo = git_root(repo)
    if only is not None:
        rel = os.path.relpath(only.resolve(), repo)
        if rel.startswith(".."):
            raise UsageError(f"{only}: not inside the git work tree {repo}")
        prefixes = ["" if rel == "." else rel.replace(os.sep, "/") + "/"]
    else:
        configs = _staged(repo, [f":(glob)**/{CONFIG_PATH.as_posix()}"])
        prefixes = [c[: -len(CONFIG_PATH.as_posix())] for c in configs]
    with tempfile.TemporaryDirectory(prefix="promote-staged-") as tmp:
        out = []
        for n, prefix in enumerate(prefixes):
            real = Workspace.load(repo / prefix) if prefix else Workspace.load(repo)
            from promote.view import View

            tops = View(real).tops
            ledger = real.ledger_spec
            specs = [f"{prefix}{CONFIG_PATH.as_posix()}"]
            specs += [f"{prefix}{t}" for t in tops]
            if "://" not in ledger:
                specs.append(f"{prefix}{ledger}")
            dest = Path(tmp) / str(n)
            dest.mkdir()
            files = _staged(repo, specs)
            if files:
                listing = "\0".join(files).encode() + b"\0"
                _git(repo, "checkout-index", "-z", "--stdin", f"--prefix={dest}/", input=listing)
            root = dest / prefix
            config = root / CONFIG_PATH
            if not config.exists():  # not staged: the work tree's config applies
                makedirs_durable(config.parent)
                atomic_write(config, (real.root / CONFIG_PATH).read_bytes())
            out.append((prefix, real, Workspace.load(root)))
        yield out


# -- CI workflows -------------------------------------------------------------------


def _version() -> str:
    try:
        return metadata.version("cas-promote")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "0.1.0"


def workflow(ws: Workspace, repo: Path) -> tuple[Path, bytes]:
    """Where the GitHub workflow of the gate goes, and its bytes (deterministic)."""
    rel = os.path.relpath(ws.root, repo).replace(os.sep, "/")
    lines = [
        "# The promotion gate, written by `promote init --ci github`. On every pull",
        "# request: no authoritative path changes but through a promotion, and every",
        "# ledger entry is intact and justified. See the cas-promote README, 'CI gate'.",
        "name: promote-gate",
        "on:",
        "  pull_request:",
        "permissions:",
        "  contents: read",
        "jobs:",
        "  gate:",
        "    runs-on: ubuntu-latest",
        "    env:",
        "      # What to install: pin the release you use (a version, a git URL, a wheel).",
        f'      PROMOTE_PACKAGE: "cas-promote=={_version()}"',
        "      # The store is the config's (inside a workspace a CAS_STORE may only repeat",
        "      # it): one CI reaches, such as s3://bucket/prefix, credentials from secrets.",
        "      AWS_ENDPOINT_URL: ${{ vars.AWS_ENDPOINT_URL }}",
        "      AWS_DEFAULT_REGION: ${{ vars.AWS_DEFAULT_REGION || 'us-east-1' }}",
        "      AWS_ACCESS_KEY_ID: ${{ secrets.AWS_ACCESS_KEY_ID }}",
        "      AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}",
    ]
    if rel != ".":
        lines += ["    defaults:", "      run:", f"        working-directory: {rel}"]
    lines += [
        "    steps:",
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5",
        "        with:",
        '          python-version: "3.12"',
        "      - name: install promote",
        '        run: python -m pip install "$PROMOTE_PACKAGE"',
        "      - name: the committed ledger chain and tree (no store needed)",
        "        run: promote verify-tree",
        "      # Every entry re-justified from the store: signed by a runner of the trust",
        "      # roots pinned before it, its changes exactly its capsule's targets, its",
        "      # evidence verified and covering them, an allow on the rebuilt input.",
        "      - name: promote ledger verify (every entry re-justified, in the store)",
        "        run: promote ledger verify",
    ]
    if ws.view_mode == "copy":
        lines += [
            "      - name: promote verify (the ledger, and the committed view)",
            "        run: promote verify",
        ]
    else:
        lines += [
            "      # A symlink-mode view is derived local state and never committed;",
            "      # verify-tree has checked that nothing else sits under the allow-list.",
        ]
    return repo / WORKFLOW_PATH, ("\n".join(lines) + "\n").encode()


def write_workflow(ws: Workspace, kind: str) -> tuple[Path, bool]:
    """Write the CI workflow of `kind` (only "github"); returns (path, written).

    An existing file is kept (written is False): delete it to regenerate.
    """
    if kind != "github":
        raise UsageError(f"--ci {kind!r}: only 'github' is supported")
    try:
        repo = git_root(ws.root)
    except UsageError:
        repo = ws.root  # not (yet) a git repository: the workspace is the top
    path, data = workflow(ws, repo)
    if path.exists():
        return path, False
    makedirs_durable(path.parent)
    atomic_write(path, data)
    return path, True
