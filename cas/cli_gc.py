"""`cas gc`: the command line of garbage collection (see `cas.gc`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cas.errors import UsageError
from cas.stores import find_workspace, open_store, resolve_store_spec

__all__ = ["register"]


@click.command()
@click.option("--dry-run", is_flag=True, help="Show what would be removed; remove nothing.")
@click.option(
    "--grace",
    type=float,
    default=3600.0,
    show_default=True,
    metavar="SECONDS",
    help="Keep every object younger than this (by mtime).",
)
@click.option(
    "--pin",
    "pins",
    multiple=True,
    metavar="DIGEST",
    help="Keep this object too (repeatable; see also <store>/pins).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def gc(
    ctx: click.Context, dry_run: bool, grace: float, pins: tuple[str, ...], as_json: bool
) -> None:
    """Remove objects the workspace's ledger does not reference, stray temps and old
    view generations.

    Roots: every digest the ledger references (all entries, their decisions, policy
    bundles, inputs and states), objects younger than --grace, and pins
    (<store>/pins, one digest per line, and --pin). Runs only inside a workspace.
    """
    from cas.gc import collect
    from cas.local import LocalStore

    root = os.environ.get("PROMOTE_ROOT")
    workspace = Path(root) if root else find_workspace(Path.cwd())
    if workspace is None:
        raise UsageError(
            "cas gc runs inside a promote workspace: its ledger names the roots, and"
            " without them gc would have to guess"
        )
    store = open_store(resolve_store_spec(ctx.obj["store"]))
    if not isinstance(store, LocalStore):
        raise UsageError(f"cas gc supports local stores only, not {store.location}")
    report = collect(store, workspace, grace, pins, dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    verb = "would remove" if dry_run else "removed"
    for r in report.removed:
        click.echo(f"{verb} {r.digest}  {r.size}")
    for t in report.temps + report.generations:
        click.echo(f"{verb} {t}")
    click.echo(report.summary())


def register(group: click.Group) -> None:
    group.add_command(gc)
