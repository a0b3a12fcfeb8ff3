"""Durable file-system primitives: write, rename and directory fsync."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from cas.errors import UsageError

__all__ = [
    "atomic_write",
    "fsync_dir",
    "make_temp",
    "make_temp_dir",
    "makedirs_durable",
    "open_error",
    "open_source",
]


def _temp_name(directory: str | os.PathLike[str], prefix: str, suffix: str) -> str:
    return f"{os.fspath(directory)}/{prefix}{os.urandom(6).hex()}{suffix}"


def make_temp(directory: str | os.PathLike[str], prefix: str, suffix: str = "") -> tuple[int, str]:
    """A new file in `directory`, as `tempfile.mkstemp` makes it (a fresh random name,
    O_EXCL, no symlink followed, mode 0600): its fd, open for reading and writing, and
    its path. Here rather than tempfile, whose import `cas put` would pay at every call.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    while True:
        name = _temp_name(directory, prefix, suffix)
        try:
            return os.open(name, flags, 0o600), name
        except FileExistsError:
            continue


def make_temp_dir(directory: str | os.PathLike[str], prefix: str) -> str:
    """A new directory in `directory`, as `tempfile.mkdtemp` makes it (mode 0700)."""
    while True:
        name = _temp_name(directory, prefix, "")
        try:
            os.mkdir(name, 0o700)
            return name
        except FileExistsError:
            continue


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs_durable(path: Path) -> None:
    """`mkdir -p`, fsyncing each parent whose entries changed."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        fsync_dir(d.parent)


def atomic_write(path: Path, data: bytes | Iterable[bytes], mode: int = 0o644) -> None:
    """Replace `path` with `data`: temp file, fsync, rename, fsync the directory.

    `data` is the bytes, or chunks of them: an exception while they are drawn (a
    verifying reader's) removes the temp file and leaves `path` as it was. Readers
    see either the old file or the new one, never a mix.
    """
    chunks = (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data
    fd, tmp = make_temp(path.parent, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def open_source(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    """Open a file to ingest, with the errors of `ObjectStore.put_file`; and its stat.

    Raises:
        UsageError: when `path` is missing, a directory or unreadable.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise open_error(path, e) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{path}: {NOT_A_FILE}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


#: What `open_error` says of a directory by default.
NOT_A_FILE = "is a directory, not a file"


def open_error(
    name: object,
    e: OSError,
    *,
    missing: str = "no such file",
    directory: str = NOT_A_FILE,
    denied: str | None = "permission denied",
    verb: str = "open",
) -> UsageError:
    """The one-line error for a file `name` that could not be opened: `name: why`.

    `why` is `missing`, `directory` or `denied` (None: like any other errno) for those
    errnos, else `cannot <verb>: <strerror>`.
    """
    if isinstance(e, FileNotFoundError):
        why = missing
    elif isinstance(e, IsADirectoryError):
        why = directory
    elif isinstance(e, PermissionError) and denied is not None:
        why = denied
    else:
        why = f"cannot {verb}: {e.strerror}"
    return UsageError(f"{name}: {why}")
