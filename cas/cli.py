"""`cas`: the command line of the content-addressed store.

A thin layer: parse, call one library function, print.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from cas import _cli
from cas._cli import emit_json, json_option, path_option, verbose_option
from cas.errors import EXIT_INTEGRITY

# The store, digest and JSON modules load when a command runs, not for `cas --help`.
if TYPE_CHECKING:
    from collections.abc import Iterator

    from cas.backend import ObjectStore
    from cas.digest import Digest, ObjectRef


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
@click.version_option(package_name="cas-promote", prog_name="cas")
@click.pass_context
def main(ctx: click.Context, store: str | None, verbose: bool) -> None:
    """A content-addressed artifact store keyed by BLAKE3 digests.

    Exit codes: 0 ok, 1 internal error, 2 usage or invalid input, 3 integrity
    failure, 4 denied by policy, 5 conflict.
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
    click.echo(f"initialized store {store.location}")


@main.command()
@click.argument("files", nargs=-1, required=True)
@json_option("Print a JSON array.")
@click.pass_context
def put(ctx: click.Context, files: tuple[str, ...], as_json: bool) -> None:
    """Ingest FILES (or - for stdin); print `<digest>  <size>  <path>` each."""
    from cas.local import LocalStore

    store = _store(ctx)
    results: list[tuple[ObjectRef, str]] = []
    show = _cli.progress_enabled() and len(files) > 1
    with click.progressbar(length=len(files), label="put", file=sys.stderr, hidden=not show) as bar:
        refs: Iterator[ObjectRef]
        if isinstance(store, LocalStore) and len(files) > 1:
            # One sync per batch, not two per file; each ref comes once it is durable.
            sources = [sys.stdin.buffer if name == "-" else name for name in files]
            refs = store.put_many(sources, progress=bar.update if show else None)
        else:
            refs = (
                store.put(sys.stdin.buffer) if name == "-" else store.put_file(Path(name))
                for name in files
            )
        lines: list[str] = []
        try:
            for ref, name in zip(refs, files, strict=False):
                results.append((ref, name))
                if not as_json:
                    lines.append(f"{ref.digest}  {ref.size}  {name}\n")
                    if len(lines) >= 1000:
                        click.echo("".join(lines), nl=False)
                        lines = []
        finally:  # what is durable is printed, even when a later file fails
            if lines:
                click.echo("".join(lines), nl=False)
    if as_json:
        emit_json([{**ref.to_dict(), "path": name} for ref, name in results])


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
@click.pass_context
def fsck(ctx: click.Context, as_json: bool, quarantine: bool) -> None:
    """Re-hash every object and check the store's layout. Exit 3 on any problem."""
    from cas.fsck import check_all
    from cas.stores import resolve_store_spec

    spec = resolve_store_spec(ctx.obj["store"])
    if _cli.progress_enabled():
        with click.progressbar(length=1, label="fsck", file=sys.stderr) as bar:

            def progress(done: int, total: int) -> None:
                bar.length = max(total, 1)
                bar.update(done - bar.pos)

            report = check_all(spec, quarantine=quarantine, progress=progress)
    else:
        report = check_all(spec, quarantine=quarantine)
    if as_json:
        emit_json(report.to_dict())
    else:
        for p in report.problems:
            where = f" {p.digest}" if p.digest else ""
            click.echo(f"{p.kind}:{where} {p.location}: {p.detail}")
        click.echo(report.summary(), err=bool(report.problems))
    for note in report.notes:
        click.echo(note, err=True)
    if report.problems:
        ctx.exit(EXIT_INTEGRITY)


from cas.cli_gc import register as _register_gc  # noqa: E402

_register_gc(main)


def run() -> NoReturn:
    _cli.run(main, "cas")


if __name__ == "__main__":
    run()
