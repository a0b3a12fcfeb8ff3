"""What the command families share: the workspace of the invocation, its ledger,
options, and how a promotion's outcome is printed."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
from click.decorators import FC

from cas.errors import UsageError
from promote._run import print_outcome

__all__ = [
    "ENGINES",
    "MODES",
    "dry_run_option",
    "engine_option",
    "open_ledger",
    "opened",
    "print_outcome",
    "read_input",
    "workspace",
    "write_output",
]

#: The policy engines a command's --engine may name.
ENGINES = click.Choice(["regorus", "opa", "opa-rest"])
#: How a view is materialized (--mode).
MODES = click.Choice(["symlink", "copy"])

#: `--engine`, for the commands that ask the policy.
engine_option = click.option(
    "--engine", type=ENGINES, help="Override the configured policy engine."
)


def dry_run_option(text: str) -> Callable[[FC], FC]:
    """`--dry-run`: the gate's steps 1-4 only, then `text`."""
    return click.option("--dry-run", is_flag=True, help=f"Steps 1-4 only: {text}")


def read_input(path: Path, what: str) -> bytes:
    try:
        return sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as e:
        raise UsageError(f"{what} {path}: {e.strerror}") from None


def write_output(path: Path, data: bytes) -> None:
    """Write an -o/--output file: a regular file (or a new one) is replaced atomically;
    anything else that is there, such as /dev/null or a pipe, is written to, never
    replaced by a file (a rename would put a file where /dev/null was)."""
    import os
    import stat

    from cas.fsutil import atomic_write

    try:
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            atomic_write(path, data)
        else:
            with open(path, "wb") as f:
                f.write(data)
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


def workspace(ctx: click.Context) -> Any:
    from promote.workspace import Workspace

    return Workspace.find(ctx.find_root().obj["root"])


@contextlib.contextmanager
def opened(ctx: click.Context) -> Iterator[tuple[Any, Any]]:
    """The workspace and its commit backend, closed afterwards if it holds a connection."""
    ws = workspace(ctx)
    backend = open_ledger(ws)
    try:
        yield ws, backend
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


def open_ledger(ws: Any) -> Any:
    """The commit backend of `ws` (a file ledger, or PostgreSQL)."""
    from promote.verify import open_ledger as _open

    return _open(ws)
