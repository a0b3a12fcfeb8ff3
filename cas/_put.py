"""`cas put`, without click: what the click command and `cas._entry`'s fast path run."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cas._out import Progress, emit_json, error_doc, error_line
from cas.errors import UsageError

if TYPE_CHECKING:
    from cas.digest import ObjectRef
    from cas.errors import CasError


def _inputs(files: Sequence[str], recursive: bool) -> list[tuple[str, str]]:
    """(what to open, the name to print) of each input; with `recursive`, every file
    under a directory (sorted, symlinked directories not followed), named relative to
    that directory."""
    out: list[tuple[str, str]] = []
    for name in files:
        if not (recursive and name != "-" and os.path.isdir(name)):
            out.append((name, name))
            continue
        for top, dirs, names in os.walk(name):
            dirs.sort()
            for n in sorted(names):
                path = os.path.join(top, n)
                out.append((path, Path(os.path.relpath(path, name)).as_posix()))
    return out


def _source_size(name: str) -> int:
    try:
        return 0 if name == "-" else os.stat(name).st_size
    except OSError:
        return 0


class Results:
    """What a multi-input command prints: a line per result as it comes, an error line
    per failed input, or (--json) one array in input order; the first failure's exit
    code at the end."""

    def __init__(self, as_json: bool, bar: Progress) -> None:
        self.as_json = as_json
        self.bar = bar
        self.rows: dict[int, dict[str, object]] = {}
        self.lines: list[str] = []
        self.code = 0

    def ok(self, i: int, ref: ObjectRef, name: str) -> None:
        if self.as_json:
            self.rows[i] = {**ref.to_dict(), "path": name}
            return
        self.lines.append(f"{ref.digest}  {ref.size}  {name}\n")
        if len(self.lines) >= 1000:
            self.flush()

    def failed(self, i: int, name: str, e: CasError) -> None:
        self.code = self.code or e.exit_code
        if self.as_json:
            self.rows[i] = {"path": name, **error_doc(str(e), e.exit_code)}
            return
        self.flush()
        self.bar.echo(error_line("cas", str(e), e.exit_code) + "\n", err=True)

    def flush(self) -> None:
        if self.lines:
            self.bar.echo("".join(self.lines))
            self.lines = []

    def finish(self) -> int:
        """Print what is left (the JSON array); the exit code."""
        self.flush()
        if self.as_json:
            emit_json([self.rows[i] for i in sorted(self.rows)])
        return self.code


def put_files(
    store_spec: str | None,
    files: Sequence[str],
    recursive: bool,
    as_json: bool,
    jobs: int | None,
) -> int:
    """Ingest `files` into the store `store_spec` names (see `cas put`); the exit code."""
    from cas.errors import CasError
    from cas.fsutil import open_source
    from cas.local import LocalStore
    from cas.stores import open_store, resolve_store_spec

    inputs = _inputs(files, recursive)
    store = open_store(resolve_store_spec(store_spec))
    with Progress("put") as bar:
        out = Results(as_json, bar)
        if len(inputs) > 1:
            # A local store syncs once per batch, not twice per file; S3 uploads several
            # at once. Either way each ref comes, in input order, once it is durable.
            local = isinstance(store, LocalStore)
            total = sum(_source_size(path) for path, _ in inputs) if bar.enabled else 0
            done = 0

            def staged(n: int) -> None:
                nonlocal done
                done += n
                bar.update(done, total)

            failed: set[int] = set()

            def on_error(i: int, e: CasError) -> None:
                failed.add(i)
                if local or isinstance(e, UsageError):
                    out.failed(i, inputs[i][1], e)
                # else the remote store failed: put_many raises it, to be printed once,
                # after the refs of the puts that were in flight

            sources = [sys.stdin.buffer if path == "-" else path for path, _ in inputs]
            i = 0
            try:
                refs = store.put_many(
                    sources,
                    progress=staged if bar.enabled else None,
                    on_error=on_error,
                    jobs=jobs,
                )
                for ref in refs:
                    while i in failed:
                        i += 1
                    out.ok(i, ref, inputs[i][1])
                    i += 1
            finally:  # what is durable is printed, even when a later batch fails
                out.flush()
        else:
            for i, (path, name) in enumerate(inputs):
                try:
                    if path == "-":
                        ref = store.put(sys.stdin.buffer)
                    elif isinstance(store, LocalStore):
                        fd, _ = open_source(path)
                        with os.fdopen(fd, "rb", buffering=0) as f:
                            ref = store.put(f, progress=bar.update)
                    else:
                        ref = store.put_file(Path(path))
                except CasError as e:
                    if not isinstance(e, UsageError):
                        raise  # the store failed, not this input
                    out.failed(i, name, e)
                    continue
                out.ok(i, ref, name)
        return out.finish()
