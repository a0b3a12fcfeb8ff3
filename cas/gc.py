"""`cas gc`: remove what nothing references, and the debris of interrupted work.

Roots (kept, whatever their age):

- every digest the workspace's ledger references, in every entry ever committed:
  capsules, CHECK reports, decisions and the policy bundles and inputs they name,
  pointer states before and after, and the objects of every change;
- every object younger than the grace period (`--grace`, by mtime; a put that finds
  its object already stored refreshes the mtime, so it counts as new);
- pins: the digests listed in `<store>/pins` (one per line, `#` comments) and those
  given with `--pin`.

gc holds the store's collect lock exclusively (every put and promotion holds it
shared while it is about to name an object), then the ledger lock and the view lock,
so no promotion can commit, and no view can switch, while it decides. It re-checks
each object just before removing it. It also removes temp files that no live writer
holds a lock on, and view generations other than the current one.

It works only inside a promote workspace: without a ledger it could not know the
roots, and refuses rather than guess.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from cas._crash import crashpoint
from cas.digest import Digest, ObjectRef
from cas.errors import UsageError
from cas.fsutil import fsync_dir
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
    workspace: Path,
    grace: float = DEFAULT_GRACE,
    pins: Iterable[str] = (),
    dry_run: bool = False,
) -> GcReport:
    """Collect garbage in `store`, whose roots are the ledger of `workspace`.

    Raises:
        UsageError: a negative grace, a bad pin. IntegrityError: an unreadable
        ledger (gc never guesses roots). ConflictError: a lock held too long.
    """
    from promote.ledger.roots import ledger_roots
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    if grace < 0:
        raise UsageError(f"--grace {grace:g}: want a number of seconds >= 0")
    pinned = read_pins(store, pins)
    ws = Workspace.load(workspace)
    ledger = open_ledger(ws)
    with contextlib.ExitStack() as locks:
        locks.enter_context(hold(store.objects, what="the store's collect lock"))
        lock = getattr(ledger, "lock", None)
        if lock is not None:
            locks.enter_context(lock())
        keep = ledger_roots(ledger, store) | pinned
        generations = _collect_generations(ws, dry_run)
        removed, kept = _collect_objects(store, keep, grace, dry_run)
        temps = _collect_temps(store, dry_run)
    return GcReport(dry_run, kept, removed, temps, generations)


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


def _collect_generations(ws: Any, dry_run: bool) -> list[str]:
    """View generations (and their half-built temps) other than the current one."""
    from promote.ledger.files import file_lock

    meta: Path = ws.meta_dir
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


def _rmtree(path: Path) -> None:
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
