"""`cas fsck`: everything the store and (in a workspace) the ledger can prove.

The workspace's checks come from its hooks (`cas.hooks`); when none is installed the
store is still checked, and the report says that the workspace was not.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cas.backend import Problem
from cas.hooks import GROUP, load_hooks
from cas.local import LocalStore
from cas.stores import find_workspace, open_store, resolve_store_spec

__all__ = ["FsckReport", "check_all"]


class FsckReport:
    """What `check_all` found: the objects checked, the problems, and (in a workspace
    without hooks) what could not be checked, one line each."""

    def __init__(self, objects: int, problems: list[Problem], notes: list[str] | None = None):
        self.objects = objects
        self.problems = problems
        self.notes = [] if notes is None else notes

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": not self.problems,
            "objects": self.objects,
            "problems": [p.to_dict() for p in self.problems],
        }
        if self.notes:
            out["notes"] = self.notes
        return out

    def summary(self) -> str:
        n = len(self.problems)
        state = "clean" if not n else f"{n} problem{'s' if n != 1 else ''}"
        return f"fsck: {self.objects} objects checked, {state}"


def _workspace_of(store_spec: str) -> Path | None:
    """The enclosing workspace, if `store_spec` is its store (else the ledger is not ours)."""
    env_root = os.environ.get("PROMOTE_ROOT")
    root = Path(env_root) if env_root else find_workspace(Path.cwd())
    if root is None:
        return None
    if resolve_store_spec(None, root) != store_spec and not _same_dir(
        resolve_store_spec(None, root), store_spec
    ):
        return None
    return root


def _same_dir(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_all(
    store_spec: str,
    quarantine: bool = False,
    progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
) -> FsckReport:
    """Check the store; inside a workspace, also its pointers and ledger.

    `progress(done, total)` is called as objects are checked (see `ObjectStore.fsck`);
    `jobs` is how many processes check a local store's objects (default: every core).
    """
    store = open_store(store_spec)
    if isinstance(store, LocalStore):
        problems = store.fsck(quarantine=quarantine, progress=progress, jobs=jobs)
        objects = store.checked or 0
    else:
        objects = sum(1 for _ in store.iterate())
        problems = store.fsck(quarantine=quarantine, progress=progress)
    notes: list[str] = []
    root = _workspace_of(store_spec)
    if root is not None:
        hooks = load_hooks(root)
        if hooks is None:
            notes.append(
                f"fsck: the ledger and view of {root} were not checked:"
                f" no installed package provides {GROUP} (install promote)"
            )
        else:
            problems = problems + hooks.problems(store)
    return FsckReport(objects, sorted(problems), notes)
