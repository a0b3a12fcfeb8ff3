"""`cas fsck`: everything the store and (in a workspace) the ledger can prove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from cas.backend import Problem
from cas.stores import find_workspace, open_store

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


def check_all(store_spec: str, quarantine: bool = False) -> FsckReport:
    """Check the store; inside a workspace, also its pointers and ledger."""
    store = open_store(store_spec)
    objects = sum(1 for _ in store.iterate())
    problems = store.fsck(quarantine=quarantine)
    root = find_workspace(Path.cwd())
    if root is not None:
        from promote.verify import ledger_problems

        problems = problems + ledger_problems(root, store)
    return FsckReport(objects, sorted(problems))
