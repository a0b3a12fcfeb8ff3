"""`cas gc`: the command line of garbage collection (see `cas.gc`).

Which roots: in a workspace (`$PROMOTE_ROOT`, else the one enclosing the current
directory, else the one whose store this is), what its hooks say (`cas.hooks`) plus
pins and the grace period; for a standalone store, pins and the grace period.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from cas._cli import json_option
from cas.errors import UsageError
from cas.stores import _store_of_workspace, find_workspace, open_store, resolve_store_spec

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
@json_option("Print the report as JSON.")
@click.pass_context
def gc(
    ctx: click.Context, dry_run: bool, grace: float, pins: tuple[str, ...], as_json: bool
) -> None:
    """Remove unreferenced old objects, stray temps and workspace debris.

    Roots: objects younger than --grace, pins (<store>/pins, one digest per line, and
    --pin), and in a workspace what it keeps alive (for promote: every digest its
    ledger references, in all entries, their decisions, policy bundles, inputs and
    states). Temps no live writer holds are removed, and in a workspace its debris
    (for promote: view generations other than the current one).

    A standalone store (cas init DIR, no workspace) keeps its pins and young objects.
    A workspace's store is collected only when the workspace's hooks are installed
    (the promote package); otherwise gc refuses rather than guess its roots.
    """
    from cas.gc import collect
    from cas.hooks import GROUP, load_hooks
    from cas.local import LocalStore

    root = os.environ.get("PROMOTE_ROOT")
    workspace = Path(root) if root else find_workspace(Path.cwd())
    store = open_store(resolve_store_spec(ctx.obj["store"]))
    if not isinstance(store, LocalStore):
        raise UsageError(f"cas gc supports local stores only, not {store.location}")
    if workspace is None:
        workspace = _owner(store.root)
    hooks = None
    if workspace is not None:
        hooks = load_hooks(workspace)
        if hooks is None:
            raise UsageError(
                f"{workspace} is a workspace, but no installed package provides {GROUP}"
                " (install promote): without its roots gc would have to guess"
            )
    report = collect(store, hooks, grace, pins, dry_run)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
        return
    verb = "would remove" if dry_run else "removed"
    for r in report.removed:
        click.echo(f"{verb} {r.digest}  {r.size}")
    for t in report.temps + report.generations:
        click.echo(f"{verb} {t}")
    click.echo(report.summary())


def _owner(store_root: Path) -> Path | None:
    """The workspace enclosing `store_root` whose store it is, if any.

    So that `cas --store WS/.cas gc`, run from outside WS, still keeps WS's roots
    instead of treating its store as standalone.
    """
    workspace = find_workspace(store_root)
    if workspace is None:
        return None
    spec = _store_of_workspace(workspace)
    if "://" in spec:
        return None
    try:
        return workspace if os.path.samefile(spec, store_root) else None
    except OSError:
        return None


def register(group: click.Group) -> None:
    group.add_command(gc)
