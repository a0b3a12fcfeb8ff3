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
from collections.abc import Iterator
from pathlib import Path

from cas.backend import ObjectStore, Problem
from cas.digest import Digest
from cas.hooks import WorkspaceHooks
from promote.dirfd import LinkInTheWay, open_dir, rmtree_at
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
        """View generations (and their half-built temps) other than the current one.

        Everything is removed through directory descriptors, following no link
        (`promote.dirfd.rmtree_at`): a link planted among the generations is unlinked,
        never followed, and no mode is changed outside the workspace.
        """
        meta = self.workspace.meta_dir
        try:
            meta_fd = open_dir(str(meta))
        except (FileNotFoundError, LinkInTheWay):
            return []  # no view, or a linked .promote that verify reports
        out = []
        try:
            with file_lock(meta / "view.lock", what="the view lock"):
                try:
                    current = Path(os.readlink("current", dir_fd=meta_fd)).name
                except OSError:
                    current = None
                try:
                    gens_fd = open_dir("generations", meta_fd)
                except (FileNotFoundError, LinkInTheWay):
                    gens_fd = None
                if gens_fd is not None:
                    try:
                        for name in sorted(os.listdir(gens_fd)):
                            if name == current:
                                continue
                            out.append(f".promote/generations/{name}")
                            if not dry_run:
                                rmtree_at(gens_fd, name)
                        if not dry_run:
                            os.fsync(gens_fd)
                    finally:
                        os.close(gens_fd)
                for name in sorted(os.listdir(meta_fd)):
                    if name.startswith(".current-"):  # a switch's temp link, left by a kill
                        out.append(f".promote/{name}")
                        if not dry_run:
                            rmtree_at(meta_fd, name)
                if out and not dry_run:
                    os.fsync(meta_fd)
        finally:
            os.close(meta_fd)
        return out


def hooks_for(root: Path) -> WorkspaceHooks:
    """The entry point `cas.workspace_hooks`: the hooks of the workspace at `root`.

    Typed as the protocol, so that mypy proves `PromoteHooks` fulfils it.
    """
    return PromoteHooks(root)
