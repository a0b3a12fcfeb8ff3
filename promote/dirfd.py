"""File-system work through directory file descriptors, never following a link.

The view lives in a tree that others may write to. A path checked and then used can
be swapped for a symlink in between (a time-of-check-to-time-of-use race), so the
view never uses a path twice: it opens each directory, one segment at a time, with
`O_NOFOLLOW | O_DIRECTORY` relative to the one above (`dir_fd=`), and creates,
renames and removes names only inside a directory it holds open. A symlink where a
directory belongs is then an error (`ELOOP`/`ENOTDIR`), never a way out of the tree.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterable, Iterator

from promote.errors import WorkspaceError

__all__ = [
    "DIR_FLAGS",
    "LinkInTheWay",
    "lstat_at",
    "open_dir",
    "open_dirs",
    "rmtree_at",
    "temp_name",
    "write_at",
]

#: How every directory of the view is opened: never through a link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkInTheWay(WorkspaceError):
    """A symlink, or something else that is not a directory, where one belongs."""


def temp_name(prefix: str) -> str:
    """An unpredictable name: nobody can plant something under it beforehand."""
    return f"{prefix}{secrets.token_hex(16)}"


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """`name`'s own stat (a link's, not its target's); None when absent."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def open_dir(name: str, dir_fd: int | None = None, *, create: bool = False, where: str = "") -> int:
    """Open the directory `name` (relative to `dir_fd`) without following a link.

    With `create`, make it first when absent (mode 0755).

    Raises:
        LinkInTheWay: `name` is a symlink or not a directory.
        FileNotFoundError: it is absent and not `create`.
    """
    if create:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=dir_fd)
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise LinkInTheWay(
                f"{where or name}: a symlink or a file where a directory belongs; move it away"
            ) from None
        raise


@contextlib.contextmanager
def open_dirs(
    root_fd: int, segments: Iterable[str], *, create: bool = False, where: str = ""
) -> Iterator[int]:
    """The directory `root/seg1/seg2/...`, each segment opened with `open_dir`."""
    fd = os.dup(root_fd)
    try:
        done: list[str] = []
        for seg in segments:
            done.append(seg)
            nxt = open_dir(seg, fd, create=create, where="/".join([where, *done]).lstrip("/"))
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def write_at(dir_fd: int, name: str, chunks: Iterable[bytes], mode: int) -> None:
    """Replace `name` in `dir_fd` with `chunks`: an exclusive temp file, fsync, rename.

    The temp file is created with `O_EXCL | O_NOFOLLOW` under an unpredictable name,
    and renamed over `name` inside the same directory: a link at `name` is replaced,
    never written through. An exception while drawing `chunks` (a verifying reader's)
    removes the temp file and leaves `name` as it was.
    """
    tmp = temp_name(f".{name[:32]}.")
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)


def rmtree_at(dir_fd: int, name: str) -> None:
    """Remove `name` from `dir_fd` and everything under it, following no link.

    A link is unlinked, never followed; each directory is opened with `O_NOFOLLOW`
    and made writable through its own descriptor (`fchmod`), so no mode change can
    reach a tree outside. A directory swapped for a link mid-way is refused
    (`LinkInTheWay`), not followed.
    """
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = open_dir(name, dir_fd)
    try:
        got = os.fstat(fd)
        if (got.st_dev, got.st_ino) != (st.st_dev, st.st_ino):
            raise LinkInTheWay(f"{name}: replaced while it was being removed")
        os.fchmod(fd, stat.S_IRWXU)
        for child in os.listdir(fd):
            rmtree_at(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
