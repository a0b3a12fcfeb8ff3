"""The commands for living with a ledger, registered on `promote`.

    promote log [-n N] [--reverse] [--json]     one line per promotion
    promote show SEQ [--json]                   an entry, its decision and evidence
    promote status [--json]                     head, view, pending recovery
    promote revert --to SEQ [--dry-run] [--json]
    promote verify-tree [--staged] [--json]     the gate without the store (pre-commit, CI)
    promote ledger verify-chain [DIR] [--store STORE] [--json]

Thin: each parses, calls one library function, prints. Output has no colour, no
pager and no timing, so it is the same on a terminal and in a pipe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cas._cli import emit_json, report_problems

__all__ = ["register"]


def _ws(ctx: click.Context) -> Any:
    from promote.workspace import Workspace

    return Workspace.find(ctx.find_root().obj["root"])


@contextlib.contextmanager
def _opened(ctx: click.Context) -> Iterator[tuple[Any, Any]]:
    """The workspace and its commit backend, closed afterwards if it holds a connection."""
    from promote.verify import open_ledger

    ws = _ws(ctx)
    backend = open_ledger(ws)
    try:
        yield ws, backend
    finally:
        close = getattr(backend, "close", None)
        if close is not None:
            close()


@click.command(name="log")
@click.option("-n", "--max-count", type=click.IntRange(min=0), help="Show at most N entries.")
@click.option("--reverse", is_flag=True, help="Oldest first (default: newest first).")
@click.option("--json", "as_json", is_flag=True, help="A JSON array of entries.")
@click.pass_context
def log_cmd(ctx: click.Context, max_count: int | None, reverse: bool, as_json: bool) -> None:
    """One line per promotion: seq, entry hash, changes, capsule meta."""
    from promote.history import iter_log

    with _opened(ctx) as (ws, ledger):
        records = iter_log(ws, ledger, max_count, reverse)
        if as_json:
            emit_json([r.to_dict() for r in records])
        else:
            for r in records:
                click.echo(r.line())


@click.command(name="show", context_settings={"ignore_unknown_options": True})
@click.argument("seq")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show_cmd(ctx: click.Context, seq: str, as_json: bool) -> None:
    """Entry SEQ (a number, 'head' or -N): its changes, decision, reasons and evidence.

    Exits 3 when a document the entry names is missing from the store.
    """
    from cas.errors import EXIT_INTEGRITY
    from promote.history import resolve_seq, show

    with _opened(ctx) as (ws, ledger):
        shown = show(ws, ledger, resolve_seq(ledger, seq))
    if as_json:
        emit_json(shown.to_dict())
    else:
        for line in shown.lines():
            click.echo(line)
    if shown.missing:
        ctx.exit(EXIT_INTEGRITY)


@click.command(name="status")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """The head, what the view shows, and anything awaiting recovery or gc."""
    from promote.history import status

    with _opened(ctx) as (ws, ledger):
        st = status(ws, ledger)
    if as_json:
        emit_json(st.to_dict())
    else:
        for line in st.lines():
            click.echo(line)


@click.command(name="revert")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="SEQ",
    help="The entry whose state to bring back (a number, or -N: N before the head).",
)
@click.option("--dry-run", is_flag=True, help="Steps 1-4 only: the capsule and the plan.")
@click.option("--json", "as_json", is_flag=True, help="Print the revert and the report.")
@click.option(
    "--engine",
    type=click.Choice(["regorus", "opa", "opa-rest"]),
    help="Override the configured policy engine.",
)
@click.pass_context
def revert_cmd(
    ctx: click.Context, to: str, dry_run: bool, as_json: bool, engine: str | None
) -> None:
    """Bring the paths changed since entry SEQ back to their state then, as a new entry.

    The capsule guards every path with what it holds now and the ledger with its
    head; its evidence is the CHECK reports recorded for the objects it restores. It
    goes through the same gate as any promotion; history is never rewritten.
    """
    from promote.cli import _print_outcome
    from promote.history import resolve_seq
    from promote.revert import revert

    with _opened(ctx) as (ws, ledger):
        seq = 0 if to.strip() == "0" else resolve_seq(ledger, to)
        plan, outcome = revert(ws, ledger, seq, engine=engine, dry_run=dry_run)
    if as_json:
        emit_json({**outcome.to_dict(), "revert": plan.to_dict()})
        ctx.exit(outcome.exit_code)
    n = len(plan.capsule.targets)
    click.echo(f"revert to entry {plan.to} {plan.to_entry}: {n} path{'s' if n != 1 else ''}")
    if plan.combined:
        froms = ", ".join(f"entry {s} ({r.digest})" for s, r in plan.sources)
        click.echo(f"evidence: combined CHECK report {plan.check_report.digest} from {froms}")
    else:
        ((s, r),) = plan.sources
        click.echo(f"evidence: the CHECK report of entry {s} ({r.digest})")
    if dry_run:
        click.echo("capsule:")
        click.echo(plan.capsule_bytes.decode(), nl=False)
    _print_outcome(outcome)
    ctx.exit(outcome.exit_code)


@click.command(name="verify-tree")
@click.option(
    "--staged",
    is_flag=True,
    help="Check what is about to be committed (the git index), in every workspace it holds.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_tree_cmd(ctx: click.Context, staged: bool, as_json: bool) -> None:
    """The gate without the store: the ledger chain, and the tree against its head.

    Fails (exit 3) when a file under the allow-list differs from what the ledger's
    last entry points at: a change to an authoritative path without a promotion.
    This is the `promote-verify` pre-commit hook (with --staged).
    """
    from cas.backend import Problem
    from promote.ci import staged_workspaces, tree_ledger, verify_tree

    root = ctx.find_root().obj["root"]
    if not staged:
        ws = _ws(ctx)
        report_problems(ctx, verify_tree(ws, tree_ledger(ws)), as_json, "verify-tree")
        return
    problems: list[Problem] = []
    with staged_workspaces(Path.cwd(), Path(root) if root else None) as found:
        for prefix, _real, ws in found:
            for p in verify_tree(ws, tree_ledger(ws)):
                problems.append(Problem(p.kind, prefix + p.location, p.detail, p.digest))
    report_problems(ctx, sorted(problems), as_json, "verify-tree --staged")


@click.command(name="verify-chain")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--store",
    metavar="STORE",
    help="Also check every object the entries name, in this store (a directory or s3://).",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify_chain_cmd(
    ctx: click.Context, directory: Path | None, store: str | None, as_json: bool
) -> None:
    """The ledger chain and HEAD of DIRECTORY (default: the workspace's), no store needed.

    Checks that every entry is canonical, that seq and prev link them, that replaying
    the changes gives every state digest, and that HEAD names the last entry. With
    --store, also every object the entries reference (as `promote ledger verify`).
    """
    from cas.errors import UsageError
    from cas.stores import open_store
    from promote.ci import EmptyStore, tree_ledger, verify_chain
    from promote.ledger import FileLedger

    if directory is not None:
        if not directory.is_dir():
            raise UsageError(f"{directory}: no such ledger directory")
        ledger: Any = FileLedger(directory, EmptyStore())
    else:
        ledger = tree_ledger(_ws(ctx))
    problems, _ = verify_chain(ledger, open_store(store) if store else None)
    report_problems(ctx, problems, as_json, "ledger verify-chain")


def register(main: click.Group) -> None:
    """Add the history, revert and CI commands to the `promote` group."""
    main.add_command(log_cmd)
    main.add_command(show_cmd)
    main.add_command(status_cmd)
    main.add_command(verify_tree_cmd)
    main.add_command(revert_cmd)
    ledger = main.commands["ledger"]
    assert isinstance(ledger, click.Group)
    ledger.add_command(verify_chain_cmd)
