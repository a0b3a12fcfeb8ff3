"""`cas gc`: remove what nothing references, and the debris of interrupted work.

Roots (kept, whatever their age):

- every object younger than the grace period (`--grace`, by mtime; a put that finds
  its object already stored refreshes the mtime, so it counts as new);
- pins: the digests listed in `<store>/pins` (one per line, `#` comments) and those
  given with `--pin`;
- in a workspace, every digest its `WorkspaceHooks.roots` yields (for a promote
  workspace: every digest its ledger references, in every entry ever committed:
  capsules, CHECK reports, decisions and the policy bundles and inputs they name,
  pointer states before and after, and the objects of every change).

gc holds the store's collect lock exclusively (every put and promotion holds it
shared while it is about to name an object), then whatever locks the workspace's
`roots` takes (a promote workspace: the ledger lock), so no promotion can commit
while it decides. It re-checks each object just before removing it. It also removes
temp files that no live writer holds a lock on, and the workspace's own debris
(`WorkspaceHooks.collect_debris`: a promote workspace's old view generations).

A standalone store (no workspace) needs no hooks: its roots are its pins and the
grace period. A store that belongs to a workspace is collected only with that
workspace's hooks: without them gc could not know the roots, and refuses rather than
guess.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from cas._crash import crashpoint
from cas.digest import Digest, ObjectRef
from cas.errors import UsageError
from cas.fsutil import fsync_dir
from cas.hooks import WorkspaceHooks
from cas.local import LocalStore, _try_lock
from cas.locks import hold

__all__ = ["DEFAULT_GRACE", "GcReport", "PINS", "collect", "read_pins"]

DEFAULT_GRACE = 3600.0
#: The pins file, relative to the store root.
PINS = "pins"


@attrs.frozen
class GcReport:
    dry_run: bool
    kept: int
    removed: list[ObjectRef]
    temps: list[str]
    #: The workspace's debris, relative to its root (a promote workspace: old view
    #: generations); empty for a standalone store.
    generations: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "kept": self.kept,
            "removed": [r.to_dict() for r in self.removed],
            "removed_bytes": sum(r.size for r in self.removed),
            "temps": self.temps,
            "generations": self.generations,
        }

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        size = sum(r.size for r in self.removed)
        return (
            f"gc: kept {self.kept} objects, {verb} {len(self.removed)} objects ({size} bytes),"
            f" {len(self.temps)} temp files, {len(self.generations)} view generations"
        )


def read_pins(store: LocalStore, extra: Iterable[str] = ()) -> set[Digest]:
    """The pinned digests: `<store>/pins` plus `extra`.

    Raises:
        InvalidDigest: for a line or argument that is not a digest.
    """
    pins = {Digest.parse(p) for p in extra}
    try:
        text = (store.root / PINS).read_text()
    except FileNotFoundError:
        return pins
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pins.add(Digest.parse(line))
    return pins


def collect(
    store: LocalStore,
    workspace: WorkspaceHooks | None,
    grace: float = DEFAULT_GRACE,
    pins: Iterable[str] = (),
    dry_run: bool = False,
) -> GcReport:
    """Collect garbage in `store`; with `workspace`, its roots are kept too.

    `workspace` None means a standalone store: the roots are the pins and the grace
    period alone.

    Raises:
        UsageError: a negative grace, a bad pin. IntegrityError: roots the workspace
        cannot all tell (gc never guesses). ConflictError: a lock held too long.
    """
    if grace < 0:
        raise UsageError(f"--grace {grace:g}: want a number of seconds >= 0")
    keep = read_pins(store, pins)
    debris: list[str] = []
    with contextlib.ExitStack() as locks:
        locks.enter_context(hold(store.objects, what="the store's collect lock"))
        if workspace is not None:
            keep |= locks.enter_context(workspace.roots(store))
            debris = workspace.collect_debris(dry_run)
        removed, kept = _collect_objects(store, keep, grace, dry_run)
        temps = _collect_temps(store, dry_run)
    return GcReport(dry_run, kept, removed, temps, debris)


def _collect_objects(
    store: LocalStore, keep: set[Digest], grace: float, dry_run: bool
) -> tuple[list[ObjectRef], int]:
    removed: list[ObjectRef] = []
    kept = 0
    dirty: set[Path] = set()
    for digest in list(store.iterate()):
        if digest in keep:
            kept += 1
            continue
        path = store.object_path(digest)
        try:
            st = os.lstat(path)  # re-checked now, just before the unlink
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < grace:
            kept += 1  # young, or damage that fsck reports and quarantines
            continue
        removed.append(ObjectRef(digest, st.st_size))
        if dry_run:
            continue
        crashpoint("gc.before-unlink")
        os.unlink(path)
        dirty.add(path.parent)
    for d in sorted(dirty):
        fsync_dir(d)
    return removed, kept


def _collect_temps(store: LocalStore, dry_run: bool) -> list[str]:
    """Temps of writers that died: nobody holds their lock."""
    out = []
    with hold(store.tmp, what="the store's temp lock"):
        for name in sorted(os.listdir(store.tmp)):
            path = store.tmp / name
            if not _try_lock(path):
                continue  # a live writer's
            out.append(f"tmp/{name}")
            if dry_run:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        if out and not dry_run:
            fsync_dir(store.tmp)
    return out
