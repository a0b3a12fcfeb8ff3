"""What a promote workspace adds to `cas fsck` and `cas gc` (see `cas.hooks`).

Declared in pyproject.toml as the `cas.workspace_hooks` entry point, so that the store
finds it without importing promote:

- `problems`: the ledger checks and the view (`promote.verify.ledger_problems`);
- `roots`: under the ledger lock, every digest the ledger names
  (`promote.ledger.roots.ledger_roots`);
- `collect_debris`: under the view lock, view generations other than the current one
  and the temp links of interrupted view switches.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from cas.backend import ObjectStore, Problem
from cas.digest import Digest
from cas.fsutil import fsync_dir
from cas.hooks import WorkspaceHooks
from promote.ledger.files import file_lock
from promote.ledger.roots import ledger_roots
from promote.verify import ledger_problems, open_ledger
from promote.workspace import Workspace

__all__ = ["PromoteHooks", "hooks_for"]


class PromoteHooks:
    """The `cas.hooks.WorkspaceHooks` of the promote workspace at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @functools.cached_property
    def workspace(self) -> Workspace:
        return Workspace.load(self.root)

    def problems(self, store: ObjectStore) -> list[Problem]:
        return ledger_problems(self.root, store)

    @contextlib.contextmanager
    def roots(self, store: ObjectStore) -> Iterator[set[Digest]]:
        ledger = open_ledger(self.workspace)
        lock = getattr(ledger, "lock", None)
        with lock() if lock is not None else contextlib.nullcontext():
            yield ledger_roots(ledger, store)

    def collect_debris(self, dry_run: bool) -> list[str]:
        """View generations (and their half-built temps) other than the current one."""
        meta = self.workspace.meta_dir
        gens = meta / "generations"
        if not gens.is_dir():
            return []
        out = []
        with file_lock(meta / "view.lock", what="the view lock"):
            try:
                current = Path(os.readlink(meta / "current")).name
            except OSError:
                current = None
            for name in sorted(os.listdir(gens)):
                if name == current:
                    continue
                out.append(f".promote/generations/{name}")
                if not dry_run:
                    _rmtree(gens / name)
            for name in sorted(os.listdir(meta)):
                if name.startswith(".current-"):  # a switch's temp link, left by a kill
                    out.append(f".promote/{name}")
                    if not dry_run:
                        (meta / name).unlink()
            if out and not dry_run:
                fsync_dir(gens)
                fsync_dir(meta)
        return out


def hooks_for(root: Path) -> WorkspaceHooks:
    """The entry point `cas.workspace_hooks`: the hooks of the workspace at `root`.

    Typed as the protocol, so that mypy proves `PromoteHooks` fulfils it.
    """
    return PromoteHooks(root)


def _rmtree(path: Path) -> None:
    """Remove `path`; a link is unlinked, never followed; read-only dirs are opened up."""
    if path.is_symlink() or not path.is_dir():
        path.unlink()
        return
    for d in _dirs(path):
        os.chmod(d, stat.S_IRWXU)
    shutil.rmtree(path)


def _dirs(root: Path) -> Iterator[Path]:
    yield root
    for dirpath, dirnames, _ in os.walk(root):
        for d in dirnames:
            p = Path(dirpath, d)
            if not p.is_symlink():
                yield p
