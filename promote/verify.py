"""Workspace checks shared by `promote verify` and `cas fsck`."""

from __future__ import annotations

from pathlib import Path

from cas.backend import ObjectStore, Problem


def ledger_problems(root: Path, store: ObjectStore) -> list[Problem]:
    """Problems of the ledger and pointers of the workspace at `root`."""
    return []
