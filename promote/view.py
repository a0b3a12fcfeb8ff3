"""The authoritative view: the committed pointer state, materialized as files.

Symlink mode (default), the Nix profile pattern::

    .promote/generations/<state hex>/release/app.whl -> <store>/objects/blake3/..
    .promote/current -> generations/<state hex>
    release -> .promote/current/release           (one link per allow-list top dir)

A generation is built under a temp name, renamed into place and never changed again.
One rename(2) of `.promote/current` switches every path of a promotion at once.

Copy mode writes read-only regular files at the paths, for trees that live in git.
Each file is replaced atomically, but a promotion's files appear one after another;
`.promote/view.json` records the state being written, so an interrupted switch is
finished by the next command or `promote recover`.

The view is derived state: the ledger is the truth, and `sync` makes the view agree
with it, whatever it finds.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cas._crash import crashpoint
from cas.backend import Problem
from cas.digest import ObjectRef
from cas.errors import IntegrityError
from cas.fsutil import atomic_write, fsync_dir, makedirs_durable
from cas.local import LocalStore
from cas.materialize import copy_object
from promote.canonical import canonical, load_json
from promote.errors import WorkspaceError
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Head
from promote.ledger.files import file_lock
from promote.model import State
from promote.workspace import Workspace

__all__ = ["View"]


class View:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.view_root
        self.meta = ws.meta_dir
        self.generations = self.meta / "generations"
        self.current = self.meta / "current"
        self.record = self.meta / "view.json"

    @property
    def tops(self) -> list[str]:
        """The top-level directories of the allow-list: the only names the view owns."""
        return sorted({p.split("/")[0] for p in self.ws.allow_list})

    def sync(self, ledger: CommitBackend) -> Head:
        """Make the view show the ledger's head state, read under the view lock.

        Reading the head under the lock means two promoters that finish out of order
        can never leave the view showing the older state.
        """
        with file_lock(self.meta / "view.lock", what="the view lock"):
            head = ledger.head()
            self._materialize(load_state(self.ws.store, head.state), head.state)
            return head

    def _materialize(self, state: State, ref: ObjectRef) -> None:
        if self.ws.view_mode == "symlink":
            self._switch_generation(state, ref)
        else:
            self._copy(state, ref)

    # -- symlink mode --------------------------------------------------------

    def generation(self, ref: ObjectRef) -> Path:
        return self.generations / ref.digest.hex

    def shown(self) -> str | None:
        """The state hex the view shows now, if any."""
        if self.ws.view_mode == "symlink":
            try:
                return Path(os.readlink(self.current)).name
            except OSError:
                return None
        try:
            doc = load_json(self.record.read_bytes(), "view record")
        except (OSError, ValueError):
            return None
        return None if doc.get("pending") else doc.get("state")

    def _switch_generation(self, state: State, ref: ObjectRef) -> None:
        store = self.ws.store
        if not isinstance(store, LocalStore):
            raise WorkspaceError("symlink views need a local store; use view.mode 'copy'")
        gen = self.generation(ref)
        if gen.is_dir() and self._tampered(state, ref):
            self._set_aside(gen)
        if not gen.is_dir():
            makedirs_durable(self.generations)
            tmp = self.generations / f".tmp-{ref.digest.hex}-{os.getpid()}"
            if tmp.exists():
                _rmtree(tmp)
            tmp.mkdir()
            for top in self.tops:
                (tmp / top).mkdir()
            for n, (path, oref) in enumerate(sorted(state.pointers.items())):
                if not store.has(oref.digest):
                    raise IntegrityError(f"{path}: object {oref.digest} is not in the store")
                link = tmp / path
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(store.object_path(oref.digest), link.parent))
                if n == 0:
                    crashpoint("view.building")
            for d in _dirs_bottom_up(tmp):
                fsync_dir(d)
                os.chmod(d, 0o555)
            os.rename(tmp, gen)
            fsync_dir(self.generations)
        crashpoint("view.before-switch")
        link_tmp = self.meta / f".current-{os.getpid()}"
        if link_tmp.is_symlink():
            link_tmp.unlink()
        link_tmp.symlink_to(Path("generations") / ref.digest.hex)
        os.replace(link_tmp, self.current)  # the view's switch point
        fsync_dir(self.meta)
        crashpoint("view.after-switch")
        for top in self.tops:
            self._ensure_top_link(top)

    def _tampered(self, state: State, ref: ObjectRef) -> bool:
        """Whether someone changed a generation (which is never changed once built)."""
        return any(
            p.kind in ("view-pointer", "view-missing")
            or (p.kind == "unpromoted" and p.location not in self.tops)
            for p in self._symlink_problems(state, ref)
        )

    def _set_aside(self, gen: Path) -> None:
        """Move a tampered generation into `.promote/quarantine/`: evidence, not trash."""
        dest_dir = self.meta / "quarantine"
        makedirs_durable(dest_dir)
        n = 0
        while (dest := dest_dir / f"{gen.name}.{n}").exists():
            n += 1
        os.rename(gen, dest)
        fsync_dir(self.generations)

    def _top_target(self, top: str) -> str:
        return os.path.relpath(self.current / top, self.root)

    def _ensure_top_link(self, top: str) -> None:
        link = self.root / top
        want = self._top_target(top)
        if link.is_symlink() and os.readlink(link) == want:
            return
        if link.exists() or link.is_symlink():
            raise WorkspaceError(
                f"{top}/ exists and is not managed by promote; move it away (its files"
                " never came through a promotion)"
            )
        tmp = self.root / f".{top}.promote-{os.getpid()}"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(want)
        os.replace(tmp, link)
        fsync_dir(self.root)

    # -- copy mode -----------------------------------------------------------

    def _copy(self, state: State, ref: ObjectRef) -> None:
        store = self.ws.store
        old: State | None = None
        try:
            doc = load_json(self.record.read_bytes(), "view record")
            if not doc.get("pending"):
                old = load_state(store, ObjectRef.from_dict(doc["state"]))
        except FileNotFoundError:
            old = State()
        except Exception:
            old = None  # unknown or interrupted: check every file
        makedirs_durable(self.meta)
        atomic_write(self.record, canonical({"pending": True, "state": ref.to_dict()}))
        for top in self.tops:
            d = self._safe_path(top)
            if not d.exists():
                makedirs_durable(d)
        gone = set(old.pointers) if old is not None else set(self._copied_files())
        for path in sorted(gone - set(state.pointers)):
            p = self._safe_path(path)
            if p.is_file() and not p.is_symlink():
                p.unlink()
                fsync_dir(p.parent)
        for n, (path, oref) in enumerate(sorted(state.pointers.items())):
            p = self._safe_path(path)
            if old is not None and old.get(path) == oref and p.is_file():
                continue
            if old is None and p.is_file() and not p.is_symlink() and _file_ref(p) == oref:
                continue
            makedirs_durable(p.parent)
            copy_object(store, oref.digest, p, mode=0o444)
            if n == 0:
                crashpoint("view.building")
            crashpoint("view.file-copied")
        atomic_write(self.record, canonical({"pending": False, "state": ref.to_dict()}))

    def _safe_path(self, path: str) -> Path:
        """`root/path`, refusing to go through a symlink planted in the view."""
        p = self.root
        for seg in path.split("/"):
            p = p / seg
            if p.is_symlink():
                raise WorkspaceError(f"{p}: a symlink inside a copy-mode view; remove it")
        return p

    def _copied_files(self) -> Iterator[str]:
        for top in self.tops:
            base = self.root / top
            for dirpath, _dirs, files in os.walk(base):
                for f in files:
                    yield Path(dirpath, f).relative_to(self.root).as_posix()

    # -- checking ------------------------------------------------------------

    def problems(self, state: State, ref: ObjectRef) -> list[Problem]:
        """How the view differs from `state`; empty when it matches exactly."""
        if self.ws.view_mode == "symlink":
            return self._symlink_problems(state, ref)
        return self._copy_problems(state)

    def _symlink_problems(self, state: State, ref: ObjectRef) -> list[Problem]:
        out: list[Problem] = []
        store = self.ws.store
        assert isinstance(store, LocalStore)
        shown = self.shown()
        if shown != ref.digest.hex:
            out.append(
                Problem(
                    "view-stale", ".promote/current", f"shows {shown}, ledger says {ref.digest.hex}"
                )
            )
        for top in self.tops:
            link = self.root / top
            if not (link.is_symlink() and os.readlink(link) == self._top_target(top)):
                out.append(Problem("unpromoted", top, "not the managed link into .promote/current"))
        gen = self.generation(ref)
        if not gen.is_dir():
            out.append(
                Problem(
                    "view-missing",
                    f".promote/generations/{ref.digest.hex}",
                    "generation is missing",
                )
            )
            return out

        def check(rel: str, full: Path, want: ObjectRef) -> Problem | None:
            target = os.path.relpath(store.object_path(want.digest), full.parent)
            if full.is_symlink() and os.readlink(full) == target:
                return None
            return Problem(
                "view-pointer", rel, f"does not point at {want.digest}", str(want.digest)
            )

        # A directory is an entry only where the state has a pointer (then a wrong one).
        entries = (
            (rel, full)
            for rel, full in _walk(gen)
            if not (_real_dir(full) and (rel in self.tops or state.get(rel) is None))
        )
        seen: set[str] = set()
        out += _entry_problems(state, entries, check, seen)
        out += _missing(state, seen)
        return out

    def _copy_problems(self, state: State) -> list[Problem]:
        def check(rel: str, full: Path, want: ObjectRef) -> Problem | None:
            if full.is_symlink():  # a planted link: not the view's, and the file is missing
                return _unpromoted(rel)
            if _file_ref(full) == want:
                return None
            return Problem("view-modified", rel, f"does not hold {want.digest}", str(want.digest))

        out: list[Problem] = []
        seen: set[str] = set()
        for top in self.tops:
            base = self.root / top
            if base.is_symlink():
                out.append(
                    Problem("unpromoted", top, "a symlink where the view's directory belongs")
                )
                continue
            entries = ((f"{top}/{rel}", full) for rel, full in _walk(base) if not _real_dir(full))
            out += _entry_problems(state, entries, check, seen)
        out += _missing(state, seen)
        return out


def _unpromoted(rel: str) -> Problem:
    return Problem("unpromoted", rel, "in the view but never promoted")


def _entry_problems(
    state: State,
    entries: Iterable[tuple[str, Path]],
    check: Callable[[str, Path, ObjectRef], Problem | None],
    seen: set[str],
) -> list[Problem]:
    """What is wrong with each view entry `(rel, full)`: unpromoted when `state` has no
    pointer at `rel`, else what `check` finds. Adds to `seen` the pointers found there
    (all but those `check` calls unpromoted)."""
    out: list[Problem] = []
    for rel, full in entries:
        want = state.get(rel)
        if want is None:
            out.append(_unpromoted(rel))
            continue
        problem = check(rel, full, want)
        if problem is None or problem.kind != "unpromoted":
            seen.add(rel)
        if problem is not None:
            out.append(problem)
    return out


def _missing(state: State, seen: set[str]) -> list[Problem]:
    """The pointers of `state` not among the view entries `seen`."""
    return [
        Problem("view-missing", path, "promoted but missing from the view")
        for path in sorted(set(state.pointers) - seen)
    ]


def _real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _file_ref(path: Path) -> ObjectRef | None:
    from cas.digest import ALGORITHM, Digest, hasher

    h = hasher()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)


def _walk(base: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirs, files in os.walk(base):
        for name in sorted(dirs + files):
            full = Path(dirpath, name)
            yield full.relative_to(base).as_posix(), full


def _dirs_bottom_up(root: Path) -> list[Path]:
    out = [Path(d) for d, _, _ in os.walk(root)]
    return sorted(out, key=lambda p: len(p.parts), reverse=True)


def _rmtree(path: Path) -> None:
    for d in _dirs_bottom_up(path):
        os.chmod(d, stat.S_IRWXU)
    shutil.rmtree(path)
