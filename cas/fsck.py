"""`cas fsck`: everything the store and (in a workspace) the ledger can prove."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from cas.backend import Problem
from cas.stores import find_workspace, open_store, resolve_store_spec

__all__ = ["FsckReport", "check_all"]


@attrs.frozen
class FsckReport:
    objects: int
    problems: list[Problem]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.problems,
            "objects": self.objects,
            "problems": [p.to_dict() for p in self.problems],
        }

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
) -> FsckReport:
    """Check the store; inside a workspace, also its pointers and ledger.

    `progress(done, total)` is called as objects are checked.
    """
    store = open_store(store_spec)
    objects = sum(1 for _ in store.iterate())
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, objects)

    problems = store.fsck(quarantine=quarantine, progress=tick if progress else None)
    root = _workspace_of(store_spec)
    if root is not None:
        from promote.verify import ledger_problems

        problems = problems + ledger_problems(root, store)
    return FsckReport(objects, sorted(problems))
