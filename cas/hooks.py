"""What a workspace adds to `cas fsck` and `cas gc`, without the store depending on it.

The store stands alone: nothing under `cas/` imports the layer above it. A workspace
(a directory holding `control/promote/config.json`) may keep objects alive and may
have its own checks and its own debris; it tells the store through `WorkspaceHooks`,
which the package that owns workspaces implements and declares as an entry point:

    [project.entry-points."cas.workspace_hooks"]
    promote = "promote.store_hooks:hooks_for"

The entry point names a factory `(workspace root: Path) -> WorkspaceHooks`. It is
looked up only once a workspace has been found (never for `cas put` or
`cas --version`), and never from configuration: the code that runs is whatever the
installed packages declare (ADR 7).

With a workspace but no hook installed, `cas gc` refuses (it cannot know which
objects the workspace keeps alive) and `cas fsck` checks the store and says, in one
line, that the workspace was not checked.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Protocol, runtime_checkable

from cas.backend import ObjectStore, Problem
from cas.digest import Digest
from cas.errors import UsageError

__all__ = ["GROUP", "HookFactory", "WorkspaceHooks", "load_hooks"]

#: The entry point group a workspace implementation registers its factory under.
GROUP = "cas.workspace_hooks"


@runtime_checkable
class WorkspaceHooks(Protocol):
    """The workspace-aware parts of fsck and gc, for the workspace at one root."""

    def problems(self, store: ObjectStore) -> list[Problem]:
        """fsck's extra checks of the workspace against `store` (its ledger, its view)."""
        ...

    def roots(self, store: ObjectStore) -> contextlib.AbstractContextManager[set[Digest]]:
        """Take the workspace's locks and yield the digests it keeps alive.

        gc decides and removes while inside; the workspace must not name a new object
        until it exits. Raises (gc refuses) when the roots cannot all be known.
        """
        ...

    def collect_debris(self, dry_run: bool) -> list[str]:
        """Remove (or with `dry_run` only list) the workspace's own debris.

        Called inside `roots`. Returns what was (or would be) removed, as paths
        relative to the workspace root.
        """
        ...


class HookFactory(Protocol):
    def __call__(self, root: Path, /) -> WorkspaceHooks: ...


def load_hooks(root: Path) -> WorkspaceHooks | None:
    """The hooks of the workspace at `root`, or None when no package provides them.

    Raises:
        UsageError: when several packages provide them (which to trust is not ours to
            guess), or when the one that does returns something else than hooks.
    """
    from importlib.metadata import entry_points  # here: only a workspace pays the scan

    found = {ep.value: ep for ep in entry_points(group=GROUP)}
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(sorted(found))
        raise UsageError(f"several packages provide {GROUP} ({names}); uninstall all but one")
    (ep,) = found.values()
    factory: HookFactory = ep.load()
    hooks = factory(root)
    if not isinstance(hooks, WorkspaceHooks):
        raise UsageError(f"{GROUP} entry point {ep.value} did not return workspace hooks")
    return hooks
