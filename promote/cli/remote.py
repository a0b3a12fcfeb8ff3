"""The commands for running on several machines, registered on `promote`.

    promote db migrate [--url URL]      apply the schema migrations (explicitly)
    promote db status [--url URL]       the applied and the needed schema version
    promote ledger export [--to DIR]    the ledger as local-ledger files
    promote ledger push URL             a local ledger into PostgreSQL
    promote store push DEST             the workspace's objects into another store
    promote checkout [--to DIR]         materialize the current state here, verified

Thin: each parses, calls one function of `promote.remote` or `promote.ledger.pg`, prints.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cas._cli import path_option, report_problems
from cas.errors import UsageError
from promote.cli.common import (
    MODES,
    open_ledger,
    workspace,
)


def _db_url(ctx: click.Context, url: str | None) -> str:
    from promote.ledger.pg import is_pg_url

    if url is None:
        url = os.environ.get("PROMOTE_LEDGER") or workspace(ctx).ledger_spec
        if not is_pg_url(url):
            raise UsageError(
                "the workspace's ledger is not a postgresql:// URL; give the database with --url"
            )
    if not is_pg_url(url):
        raise UsageError(f"{url!r} is not a postgresql:// URL")
    return url


@click.group()
def db() -> None:
    """The PostgreSQL ledger database."""


#: `--url` of the `db` commands.
url_option = click.option(
    "--url", help="The database (default: the workspace's ledger URL, or $PROMOTE_LEDGER)."
)


@db.command()
@url_option
@click.pass_context
def migrate(ctx: click.Context, url: str | None) -> None:
    """Apply the schema migrations the database lacks, in one transaction."""
    from promote.ledger.pg import migrate as do_migrate
    from promote.ledger.pg import migrations, redact

    url = _db_url(ctx, url)
    done = do_migrate(url)
    for name in done:
        click.echo(f"applied {name}")
    click.echo(f"{redact(url)}: schema at version {len(migrations())}")


@db.command()
@url_option
@click.pass_context
def status(ctx: click.Context, url: str | None) -> None:
    """The schema version applied, and the one this promote needs (exit 2 if behind)."""
    from promote.ledger.pg import PgLedger, redact

    url = _db_url(ctx, url)
    ledger = PgLedger(url)
    try:
        head = ledger.head()  # connects, and refuses a schema that is not current
    finally:
        ledger.close()
    click.echo(f"{redact(url)}: schema current; ledger head entry {head.seq} {head.entry or ''}")


@click.command(name="export")
@path_option(
    "--to",
    file_okay=False,
    help="The directory (default: execution/ledger-export in the workspace).",
)
@click.pass_context
def ledger_export(ctx: click.Context, to: Path | None) -> None:
    """Write the ledger as local-ledger files (entries/<seq>.json, HEAD), then verify them.

    Run it again to bring an export up to date; entries already there must match.
    """
    from promote.ledger.files import FileLedger
    from promote.remote import export_ledger
    from promote.verify import verify_ledger

    ws = workspace(ctx)
    to = (to or ws.root / "execution" / "ledger-export").absolute()
    source = open_ledger(ws)
    if isinstance(source, FileLedger) and source.dir.resolve() == to.resolve():
        raise UsageError(f"{to} is the ledger itself")
    head, written = export_ledger(source, to, ws.store)
    click.echo(f"exported {written} new entries to {to} (head: entry {head.seq})")
    problems = verify_ledger(FileLedger(to, ws.store), ws.store)[0]
    report_problems(ctx, problems, False, "ledger verify")


@click.command(name="push")
@click.argument("url")
@path_option(
    "--from",
    "source",
    file_okay=False,
    help="The local ledger directory (default: the workspace's config 'ledger').",
)
@click.pass_context
def ledger_push(ctx: click.Context, url: str, source: Path | None) -> None:
    """Append the local ledger to the PostgreSQL ledger at URL (migrated, empty or behind).

    Then point the workspace at URL ("ledger" in control/promote/config.json).
    """
    from promote.ledger.files import FileLedger
    from promote.ledger.pg import PgLedger, is_pg_url
    from promote.remote import push_ledger

    ws = workspace(ctx)
    if not is_pg_url(url):
        raise UsageError(f"{url!r} is not a postgresql:// URL")
    if source is None:
        if "://" in ws.ledger_spec:
            raise UsageError("the workspace's ledger is not local; give it with --from DIR")
        source = ws.ledger_dir
    local = FileLedger(source.absolute(), ws.store)
    with PgLedger(url) as remote:
        before, after = push_ledger(local, remote, ws.store)
    click.echo(
        f"pushed {after.seq - before.seq} entries to {remote.location}"
        f" (head: entry {after.seq} {after.entry or ''})"
    )


@click.group()
def store() -> None:
    """The workspace's object store."""


@store.command(name="push")
@click.argument("dest")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Re-read and re-hash each object at DEST after copying it.",
)
@click.pass_context
def store_push(ctx: click.Context, dest: str, jobs: int, verify: bool) -> None:
    """Copy every object DEST lacks (a directory or s3://bucket/prefix; it must exist).

    Source bytes are verified while streaming and DEST names each object by the hash
    of what it received, so a corrupt object is never copied under its name.
    """
    from cas.stores import open_store
    from promote.remote import push_objects

    ws = workspace(ctx)
    stats = push_objects(ws.store, open_store(dest), jobs=jobs, verify=verify)
    click.echo(
        f"pushed {stats.copied} objects ({stats.bytes} bytes) to {dest};"
        f" {stats.present} were there already"
    )


@click.command()
@path_option(
    "--to", file_okay=False, help="Materialize into DIR instead of the workspace's own view."
)
@click.option(
    "--mode",
    type=MODES,
    help="With --to: the view's mode (default: the workspace's; copy for a remote store).",
)
@click.pass_context
def checkout(ctx: click.Context, to: Path | None, mode: str | None) -> None:
    """Materialize the authoritative view of the ledger's current state, verified."""
    from promote.remote import checkout as do_checkout

    ws = workspace(ctx)
    done = do_checkout(ws, open_ledger(ws), to, mode)
    click.echo(
        f"checked out ledger entry {done.head.seq} ({done.paths} paths, {done.mode} mode)"
        f" at {done.root}"
    )


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (db, store, checkout)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = (ledger_export, ledger_push)
