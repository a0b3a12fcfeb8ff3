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

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from cas._crash import crashpoint
from cas.backend import Problem
from cas.digest import ObjectRef
from cas.errors import IntegrityError
from cas.local import LocalStore
from promote.canonical import canonical, load_json
from promote.dirfd import (
    LinkInTheWay,
    lstat_at,
    open_dir,
    open_dirs,
    rmtree_at,
    temp_name,
    write_at,
)
from promote.errors import WorkspaceError
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.entry import Head
from promote.ledger.files import file_lock
from promote.model import State
from promote.paths import why_bad
from promote.workspace import Workspace

__all__ = ["LinkInTheWay", "Unmaterializable", "View"]


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

        Raises:
            Unmaterializable: the head state holds paths no file system can hold (a
                state committed before today's path hygiene); every other path is
                materialized, and the error names the first bad one.
            LinkInTheWay: a symlink or file where the view's directory belongs.
        """
        with _opened(self.ws.root) as ws_fd:
            os.close(open_dir(META, ws_fd, create=True, where=META))  # refuse a linked .promote
        with file_lock(self.meta / "view.lock", what="the view lock"):
            head = ledger.head()
            state = load_state(self.ws.store, head.state)
            good, bad = _materializable(state)
            self._materialize(good, head.state)
            if bad:
                path, why = bad[0]
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                raise Unmaterializable(
                    f"ledger entry {head.seq}: path {path!r} cannot be materialized, it {why}"
                    f"{more}; the view shows every other path"
                )
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
        """The state hex the view shows now, if any.

        In symlink mode, only when `.promote/current` resolves (by device and inode,
        not by its text) to the generation directory of that name in this
        workspace's `.promote/generations`; a link anywhere else shows nothing.
        """
        if self.ws.view_mode == "symlink":
            try:
                name = Path(os.readlink(self.current)).name
            except OSError:
                return None
            return name if self._resolves_to_generation(name) else None
        try:
            doc = load_json(_read_nofollow(self.record), "view record")
        except (OSError, ValueError):
            return None
        return None if doc.get("pending") else doc.get("state", {}).get("digest", "")[7:] or None

    def _resolves_to_generation(self, name: str) -> bool:
        if not (_is_real_dir(self.meta) and _is_real_dir(self.generations)):
            return False
        gen = self.generations / name
        try:
            own = os.lstat(gen)
            reached = os.stat(self.current)
        except OSError:
            return False
        return stat.S_ISDIR(own.st_mode) and _same(own, reached)

    def _switch_generation(self, state: State, ref: ObjectRef) -> None:
        store = self.ws.store
        if not isinstance(store, LocalStore):
            raise WorkspaceError("symlink views need a local store; use view.mode 'copy'")
        name = ref.digest.hex
        with _opened(self.ws.root) as ws_fd, _dir(ws_fd, META, create=True) as meta_fd:
            held = lstat_at(meta_fd, GENERATIONS)
            if held is not None and not stat.S_ISDIR(held.st_mode):
                self._set_aside(meta_fd, meta_fd, GENERATIONS)  # a planted link or file
            with _dir(meta_fd, GENERATIONS, create=True) as gens_fd:
                st = lstat_at(gens_fd, name)
                if st is not None and (not stat.S_ISDIR(st.st_mode) or self._tampered(state, ref)):
                    self._set_aside(meta_fd, gens_fd, name)
                    st = None
                if st is None:
                    self._build(gens_fd, state, ref, store)
                crashpoint("view.before-switch")
                cur = lstat_at(meta_fd, CURRENT)
                if cur is not None and stat.S_ISDIR(cur.st_mode):
                    self._set_aside(meta_fd, meta_fd, CURRENT)  # rename() cannot replace it
                tmp = temp_name(".current-")
                os.symlink(f"{GENERATIONS}/{name}", tmp, dir_fd=meta_fd)
                os.replace(tmp, CURRENT, src_dir_fd=meta_fd, dst_dir_fd=meta_fd)  # the switch
                os.fsync(meta_fd)
        crashpoint("view.after-switch")
        with _opened(self.root) as root_fd:
            for top in self.tops:
                self._ensure_top_link(root_fd, top)

    def _build(self, gens_fd: int, state: State, ref: ObjectRef, store: LocalStore) -> None:
        """Build the generation of `ref` under an unpredictable, exclusive temp name,
        through directory descriptors only, and rename it into place."""
        tmp = temp_name(f".tmp-{ref.digest.hex[:16]}-")
        os.mkdir(tmp, 0o700, dir_fd=gens_fd)  # exclusive: fails on anything already there
        fds: dict[tuple[str, ...], int] = {(): open_dir(tmp, gens_fd)}

        def dir_for(parts: tuple[str, ...]) -> int:
            fd = fds.get(parts)
            if fd is None:
                parent = dir_for(parts[:-1])
                os.mkdir(parts[-1], 0o755, dir_fd=parent)
                fd = fds[parts] = open_dir(parts[-1], parent)
            return fd

        gen = self.generation(ref)
        try:
            for top in self.tops:
                dir_for((top,))
            for n, (path, oref) in enumerate(sorted(state.pointers.items())):
                if not store.has(oref.digest):
                    raise IntegrityError(f"{path}: object {oref.digest} is not in the store")
                *parents, leaf = path.split("/")
                target = os.path.relpath(store.object_path(oref.digest), gen.joinpath(*parents))
                os.symlink(target, leaf, dir_fd=dir_for(tuple(parents)))
                if n == 0:
                    crashpoint("view.building")
            for parts in sorted(fds, key=len, reverse=True):  # children before parents
                os.fsync(fds[parts])
                os.fchmod(fds[parts], 0o555)  # through our own descriptor, never a link
        except BaseException:
            for fd in fds.values():
                os.close(fd)
            fds.clear()
            with contextlib.suppress(OSError):
                rmtree_at(gens_fd, tmp)
            raise
        finally:
            for fd in fds.values():
                os.close(fd)
        os.rename(tmp, ref.digest.hex, src_dir_fd=gens_fd, dst_dir_fd=gens_fd)
        os.fsync(gens_fd)

    def _tampered(self, state: State, ref: ObjectRef) -> bool:
        """Whether someone changed a generation (which is never changed once built)."""
        return any(
            p.kind in ("view-pointer", "view-missing")
            or (p.kind == "unpromoted" and p.location not in self.tops)
            for p in self._symlink_problems(state, ref)
        )

    def _set_aside(self, meta_fd: int, dir_fd: int, name: str) -> None:
        """Move `name` (of `dir_fd`) into `.promote/quarantine/`: evidence, not trash.

        rename(2) moves a link itself, never what it points at.
        """
        with _dir(meta_fd, QUARANTINE, create=True) as q_fd:
            n = 0
            while lstat_at(q_fd, dest := f"{name}.{n}") is not None:
                n += 1
            os.rename(name, dest, src_dir_fd=dir_fd, dst_dir_fd=q_fd)
            os.fsync(q_fd)
        os.fsync(dir_fd)

    def _top_target(self, top: str) -> str:
        return os.path.relpath(self.current / top, self.root)

    def _ensure_top_link(self, root_fd: int, top: str) -> None:
        want = self._top_target(top)
        st = lstat_at(root_fd, top)
        if st is not None and stat.S_ISLNK(st.st_mode) and os.readlink(top, dir_fd=root_fd) == want:
            return
        if st is not None:
            raise WorkspaceError(
                f"{top}/ exists and is not managed by promote; move it away (its files"
                " never came through a promotion)"
            )
        tmp = temp_name(f".{top}.promote-")
        os.symlink(want, tmp, dir_fd=root_fd)
        try:
            # rename(2) would replace a link planted meanwhile, but not a directory
            os.replace(tmp, top, src_dir_fd=root_fd, dst_dir_fd=root_fd)
        except OSError:
            os.unlink(tmp, dir_fd=root_fd)
            raise
        os.fsync(root_fd)

    # -- copy mode -----------------------------------------------------------

    def _copy(self, state: State, ref: ObjectRef) -> None:
        """Write the files of `state` through directory descriptors opened from the
        view root with O_NOFOLLOW: a directory swapped for a link at any moment is an
        error, never a way out of the view."""
        store = self.ws.store
        old: State | None = None
        try:
            doc = load_json(_read_nofollow(self.record), "view record")
            if not doc.get("pending"):
                old = load_state(store, ObjectRef.from_dict(doc["state"]))
        except FileNotFoundError:
            old = State()
        except Exception:
            old = None  # unknown or interrupted: check every file
        with _opened(self.ws.root) as ws_fd, _dir(ws_fd, META, create=True) as meta_fd:
            write_at(meta_fd, RECORD, [canonical({"pending": True, "state": ref.to_dict()})], 0o644)
        with _opened(self.root) as root_fd:
            for top in self.tops:
                with open_dirs(root_fd, [top], create=True, where=top):
                    pass
            gone = set(old.pointers) if old is not None else set(self._copied_files(root_fd))
            for path in sorted(gone - set(state.pointers)):
                *parents, leaf = path.split("/")
                try:
                    with open_dirs(root_fd, parents, where=path) as dfd:
                        st = lstat_at(dfd, leaf)
                        if st is not None and stat.S_ISREG(st.st_mode):
                            os.unlink(leaf, dir_fd=dfd)
                            os.fsync(dfd)
                except FileNotFoundError:
                    continue
            for n, (path, oref) in enumerate(sorted(state.pointers.items())):
                *parents, leaf = path.split("/")
                with open_dirs(root_fd, parents, create=True, where=path) as dfd:
                    st = lstat_at(dfd, leaf)
                    regular = st is not None and stat.S_ISREG(st.st_mode)
                    if regular and old is not None and old.get(path) == oref:
                        continue
                    if regular and old is None and _file_ref_at(dfd, leaf) == oref:
                        continue
                    if st is not None and stat.S_ISDIR(st.st_mode):
                        raise WorkspaceError(f"{path}: a directory where a file belongs")
                    store.open(oref.digest)  # fails early when the object is missing
                    write_at(dfd, leaf, store.open(oref.digest), 0o444)
                if n == 0:
                    crashpoint("view.building")
                crashpoint("view.file-copied")
        with _opened(self.ws.root) as ws_fd, _dir(ws_fd, META) as meta_fd:
            write_at(
                meta_fd, RECORD, [canonical({"pending": False, "state": ref.to_dict()})], 0o644
            )

    def _copied_files(self, root_fd: int) -> list[str]:
        """Every file under the tops, walked through descriptors. A link met on the way
        is refused (`LinkInTheWay`), not skipped: skipping a directory swapped for a
        link would leave its stale files behind a record that says all is done."""
        out: list[str] = []

        def walk(fd: int, prefix: str) -> None:
            for name in sorted(os.listdir(fd)):
                st = lstat_at(fd, name)
                rel = f"{prefix}/{name}"
                if st is None:
                    continue
                if stat.S_ISLNK(st.st_mode):
                    raise LinkInTheWay(f"{rel}: a symlink inside a copy-mode view; move it away")
                if stat.S_ISDIR(st.st_mode):
                    sub = open_dir(name, fd, where=rel)
                    try:
                        walk(sub, rel)
                    finally:
                        os.close(sub)
                else:
                    out.append(rel)

        for top in self.tops:
            try:
                with open_dirs(root_fd, [top], where=top) as fd:
                    walk(fd, top)
            except FileNotFoundError:
                continue
        return out

    # -- checking ------------------------------------------------------------

    def problems(self, state: State, ref: ObjectRef) -> list[Problem]:
        """How the view differs from `state`; empty when it matches exactly.

        A path of `state` that no file system can hold is reported as
        `view-unmaterializable`; the rest is compared as usual.
        """
        good, bad = _materializable(state)
        out = [
            Problem("view-unmaterializable", path, f"cannot be materialized: it {why}")
            for path, why in bad
        ]
        if self.ws.view_mode == "symlink":
            return out + self._symlink_problems(good, ref)
        return out + self._copy_problems(good)

    def _symlink_problems(self, state: State, ref: ObjectRef) -> list[Problem]:
        """Every link of the view resolved, by device and inode: `.promote` and its
        `generations` real directories, `.promote/current` reaching the generation
        it names, each top link reaching that generation's directory, and each entry
        reaching the very object file of the store its pointer names."""
        out: list[Problem] = []
        store = self.ws.store
        assert isinstance(store, LocalStore)
        for rel, path in ((META, self.meta), (f"{META}/{GENERATIONS}", self.generations)):
            if not _is_real_dir(path):
                out.append(
                    Problem(
                        "view-link", rel, "a symlink or file where the view's directory belongs"
                    )
                )
                return out
        try:
            text: str | None = os.readlink(self.current)
        except OSError:
            text = None
        shown = self.shown()
        if text is not None and shown is None:
            out.append(
                Problem(
                    "view-link",
                    f"{META}/{CURRENT}",
                    "does not resolve to a generation of this workspace",
                )
            )
        if shown != ref.digest.hex:
            out.append(
                Problem(
                    "view-stale",
                    f"{META}/{CURRENT}",
                    f"shows {shown}, ledger says {ref.digest.hex}",
                )
            )
        shown_gen = self.generations / shown if shown else None
        for top in self.tops:
            link = self.root / top
            managed = link.is_symlink() and os.readlink(link) == self._top_target(top)
            if not managed:
                out.append(Problem("unpromoted", top, "not the managed link into .promote/current"))
            elif shown_gen is not None and not _resolves_to(link, shown_gen / top):
                out.append(Problem("view-link", top, "does not resolve into the shown generation"))
        gen = self.generation(ref)
        if not _is_real_dir(gen):
            out.append(
                Problem(
                    "view-missing",
                    f"{META}/{GENERATIONS}/{ref.digest.hex}",
                    "generation is missing",
                )
            )
            return out

        def check(rel: str, full: Path, want: ObjectRef) -> Problem | None:
            if full.is_symlink() and _resolves_to(
                full, store.object_path(want.digest), regular=True
            ):
                return None
            return Problem(
                "view-pointer",
                rel,
                f"does not resolve to the store's object {want.digest}",
                str(want.digest),
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


class Unmaterializable(IntegrityError):
    """The ledger's state holds a path that no file system can hold."""


META = ".promote"
GENERATIONS = "generations"
CURRENT = "current"
QUARANTINE = "quarantine"
RECORD = "view.json"


def _materializable(state: State) -> tuple[State, list[tuple[str, str]]]:
    """`state` without the paths that fail today's hygiene, and those paths with why."""
    bad = [(p, why) for p in sorted(state.pointers) if (why := why_bad(p)) is not None]
    if not bad:
        return state, []
    skip = {p for p, _ in bad}
    return State({p: r for p, r in state.pointers.items() if p not in skip}), bad


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[int]:
    """The workspace or view root, the trusted anchor every other name is opened from."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _dir(dir_fd: int, name: str, create: bool = False) -> Iterator[int]:
    fd = open_dir(name, dir_fd, create=create, where=f"{META}/{name}" if name != META else META)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_nofollow(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _resolves_to(link: Path, want: Path, regular: bool = False) -> bool:
    """Whether following `link` reaches the very file `want` names (same device and
    inode, and the same real path), `want` itself being no link (and, with
    `regular`, a regular file)."""
    try:
        own = os.lstat(want)
        reached = os.stat(link)
    except OSError:
        return False
    if stat.S_ISLNK(own.st_mode) or (regular and not stat.S_ISREG(own.st_mode)):
        return False
    return _same(own, reached) and os.path.realpath(link) == os.path.realpath(want)


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


def _file_ref_at(dir_fd: int, name: str) -> ObjectRef | None:
    """The ref of the regular file `name` in `dir_fd`, opened without following a link."""
    from cas.digest import ALGORITHM, Digest, hasher

    h = hasher()
    size = 0
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)
