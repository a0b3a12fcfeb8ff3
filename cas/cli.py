"""`cas`: the command line of the content-addressed store.

A thin layer: parse, call one library function, print.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from cas import _cli, _version
from cas._cli import (
    emit_json,
    jobs_option,
    json_option,
    path_option,
    quiet_option,
    verbose_option,
)
from cas.errors import EXIT_INTEGRITY, UsageError

# The store, digest and JSON modules load when a command runs, not for `cas --help`.
if TYPE_CHECKING:
    from cas.backend import ObjectStore
    from cas.digest import Digest


def _store(ctx: click.Context) -> ObjectStore:
    from cas.stores import open_store, resolve_store_spec

    spec = resolve_store_spec(ctx.obj["store"])
    return open_store(spec)


def _digest(text: str) -> Digest:
    from cas.digest import Digest

    return Digest.parse(text)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store", metavar="DIR", help="The store (default: $CAS_STORE, the workspace's, or .cas)."
)
@verbose_option
@quiet_option
@click.version_option(_version.__version__, prog_name="cas")
@click.pass_context
def main(ctx: click.Context, store: str | None, verbose: bool) -> None:
    """A content-addressed artifact store keyed by BLAKE3 digests.

    Exit codes: 0 ok, 1 internal error, 2 usage or invalid input, 3 integrity
    failure, 4 denied by policy, 5 conflict. Errors are one line on stderr,
    `cas: error: ...` (with --json, an object on stdout). -v and -q are accepted
    anywhere on the command line.
    """
    ctx.obj = {"store": store, "verbose": verbose}


@main.command()
@click.argument("directory", required=False)
@click.pass_context
def init(ctx: click.Context, directory: str | None) -> None:
    """Create a store in DIRECTORY or s3://BUCKET/PREFIX (default: the resolved store).

    An S3 store's bucket is created when missing.
    """
    from cas.stores import init_store, resolve_store_spec

    store = init_store(directory or resolve_store_spec(ctx.obj["store"]))
    _cli.info(f"initialized store {store.location}")


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option(
    "-r",
    "--recursive",
    is_flag=True,
    help="Ingest every file under each FILE that is a directory; print paths relative to it.",
)
@json_option("Print a JSON array (a failed input: its path and error).")
@jobs_option
@click.pass_context
def put(
    ctx: click.Context, files: tuple[str, ...], recursive: bool, as_json: bool, jobs: int | None
) -> None:
    """Ingest FILES (or - for stdin); print `<digest>  <size>  <path>` each.

    An input that fails (missing, a directory, unreadable) is reported on its own
    line and the others are still ingested; the exit code is then the first
    failure's. A large file the store already holds is hashed, not written again.
    """
    from cas._put import put_files

    ctx.exit(put_files(ctx.obj["store"], files, recursive, as_json, jobs))


@main.command(name="hash")
@click.argument("files", nargs=-1, required=True)
@json_option("Print a JSON array (a failed input: its path and error).")
@click.pass_context
def hash_(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Print `<digest>  <size>  <path>` of FILES (or - for stdin) without storing them.

    Needs no store. An input that fails is reported and the others are still hashed.
    """
    from cas._put import Results
    from cas.digest import ALGORITHM, Digest, ObjectRef, hasher
    from cas.errors import CasError
    from cas.fsutil import open_source

    with _cli.Progress("hash") as bar:
        out = Results(as_json, bar)
        for i, name in enumerate(files):
            try:
                if name == "-":
                    f = sys.stdin.buffer
                else:
                    fd, _ = open_source(name)
                    f = os.fdopen(fd, "rb", buffering=0)
                with f:
                    h, size = hasher(), 0
                    try:
                        while chunk := f.read(8 << 20):
                            h.update(chunk)
                            size += len(chunk)
                    except OSError as e:
                        raise UsageError(f"{name}: cannot read: {e.strerror or e}") from None
            except CasError as e:
                out.failed(i, name, e)
                continue
            out.ok(i, ObjectRef(Digest(ALGORITHM, h.hexdigest()), size), name)
        ctx.exit(out.finish())


@main.command()
@click.argument("digest", type=_digest)
@click.pass_context
def cat(ctx: click.Context, digest: Digest) -> None:
    """Write an object's bytes to stdout, verified while streaming."""
    store = _store(ctx)
    out = sys.stdout.buffer
    for chunk in store.open(digest):
        out.write(chunk)
    out.flush()


@main.command()
@click.argument("digest", type=_digest)
@path_option("-o", "--output", required=True, help="Where to write the copy.")
@click.pass_context
def get(ctx: click.Context, digest: Digest, output: Path) -> None:
    """Materialize a verified copy of an object at OUTPUT."""
    from cas.materialize import copy_object

    copy_object(_store(ctx), digest, output)


@main.command()
@click.argument("digest", type=_digest)
@json_option("Print the digest and size as a JSON object.")
@click.pass_context
def stat(ctx: click.Context, digest: Digest, as_json: bool) -> None:
    """Show an object's digest and size (its bytes are not re-hashed)."""
    ref = _store(ctx).stat(digest)
    if as_json:
        emit_json(ref.to_dict())
    else:
        click.echo(f"{ref.digest}  {ref.size}")


@main.command(name="ls")
@json_option("Print a JSON array.")
@click.pass_context
def ls_(ctx: click.Context, as_json: bool) -> None:
    """List every object with its size, in digest order."""
    store = _store(ctx)
    refs = [store.stat(d) for d in store.iterate()]
    if as_json:
        emit_json([r.to_dict() for r in refs])
    else:
        for r in refs:
            click.echo(f"{r.digest}  {r.size}")


@main.command()
@json_option("Print the report as JSON.")
@click.option(
    "--quarantine", is_flag=True, help="Move bad objects into quarantine/ (never deletes)."
)
@jobs_option
@click.pass_context
def fsck(ctx: click.Context, as_json: bool, quarantine: bool, jobs: int | None) -> None:
    """Re-hash every object and check the store's layout. Exit 3 on any problem."""
    from cas.fsck import check_all
    from cas.stores import resolve_store_spec

    spec = resolve_store_spec(ctx.obj["store"])
    with _cli.Progress("fsck") as bar:
        unit = "bytes" if "://" not in spec else "objects"
        report = check_all(
            spec,
            quarantine=quarantine,
            progress=(lambda done, total: bar.update(done, total, unit)) if bar.enabled else None,
            jobs=jobs,
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            where = f" {p.digest}" if p.digest else ""
            click.echo(f"{p.kind}:{where} {p.location}: {p.detail}")
        if report.problems:
            click.echo(report.summary(), err=True)
        else:
            _cli.info(report.summary())
    for note in report.notes:
        click.echo(note, err=True)
    if report.problems:
        ctx.exit(EXIT_INTEGRITY)


from cas.cli_gc import register as _register_gc  # noqa: E402

_register_gc(main)
_cli.add_common_commands(main, "cas")


def run() -> NoReturn:
    _cli.run(main, "cas")


if __name__ == "__main__":
    run()
