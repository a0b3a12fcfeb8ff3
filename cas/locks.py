"""Advisory locks (`flock`) that the kernel drops when their holder dies.

A killed process can therefore never leave a lock that blocks the next user: the lock
file (or directory) stays, the lock does not.

Two store-wide locks coordinate writers with `cas gc`:

- the *collect lock* (on `objects/`): every writer that is about to name an object
  (a put placing or deduplicating it, a promotion from verifying its targets to its
  commit) holds it shared; `cas gc` holds it exclusive, so it never removes an
  object that a concurrent writer is about to reference;
- the *temp lock* (on `tmp/`): a put holds it shared while it creates and locks its
  temp file; whoever judges temps (fsck, gc) holds it exclusive, so a temp file is
  never seen between its creation and its lock and mistaken for debris.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from cas.errors import ConflictError

__all__ = ["DEFAULT_TIMEOUT", "hold", "wait"]

DEFAULT_TIMEOUT = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", "30"))


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    shared: bool = False,
    timeout: float | None = None,
    what: str = "lock",
) -> Iterator[None]:
    """Hold an flock on `path` (an existing file or directory), waiting up to `timeout`.

    Raises:
        ConflictError: when another process holds it for longer than `timeout`.
        FileNotFoundError: when `path` does not exist.
    """
    if timeout is None:  # read now, not at import: a long-lived caller may change it
        timeout = float(os.environ.get("PROMOTE_LOCK_TIMEOUT", DEFAULT_TIMEOUT))
    fd = os.open(path, os.O_RDONLY)
    try:
        wait(
            fd,
            fcntl.LOCK_SH if shared else fcntl.LOCK_EX,
            timeout,
            f"{what} is held by another process ({path})",
        )
        yield
    finally:
        os.close(fd)


def wait(fd: int, mode: int, timeout: float, busy: str) -> None:
    """Take an flock of `mode` on `fd`, polling with backoff for up to `timeout` seconds.

    Raises:
        ConflictError: `busy`, when the lock is still held after `timeout`.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                raise ConflictError(f"{busy}; retry later") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
