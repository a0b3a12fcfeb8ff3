"""The commands that read a ledger's history.

    promote log [-n N] [--reverse] [--json]     one line per promotion
    promote show SEQ [--json]                   an entry, its decision and evidence
    promote status [--json]                     head, view, pending recovery

Output has no colour, no pager and no timing, so it is the same on a terminal and in
a pipe.
"""

from __future__ import annotations

import click

from cas._cli import emit_json, json_option
from promote.cli.common import (
    opened,
)


@click.command(name="log")
@click.option("-n", "--max-count", type=click.IntRange(min=0), help="Show at most N entries.")
@click.option("--reverse", is_flag=True, help="Oldest first (default: newest first).")
@json_option("A JSON array of entries.")
@click.pass_context
def log_cmd(ctx: click.Context, max_count: int | None, reverse: bool, as_json: bool) -> None:
    """One line per promotion: seq, entry hash, changes, capsule meta."""
    from promote.history import iter_log

    with opened(ctx) as (ws, ledger):
        records = iter_log(ws, ledger, max_count, reverse)
        if as_json:
            emit_json([r.to_dict() for r in records])
        else:
            for r in records:
                click.echo(r.line())


@click.command(name="show", context_settings={"ignore_unknown_options": True})
@click.argument("seq")
@json_option("Print the entry, its decision and evidence as JSON.")
@click.pass_context
def show_cmd(ctx: click.Context, seq: str, as_json: bool) -> None:
    """Entry SEQ (a number, 'head' or -N): its changes, decision, reasons and evidence.

    Exits 3 when a document the entry names is missing from the store.
    """
    from cas.errors import EXIT_INTEGRITY
    from promote.history import resolve_seq, show

    with opened(ctx) as (ws, ledger):
        shown = show(ws, ledger, resolve_seq(ledger, seq))
    if as_json:
        emit_json(shown.to_dict())
    else:
        for line in shown.lines():
            click.echo(line)
    if shown.missing:
        ctx.exit(EXIT_INTEGRITY)


@click.command(name="status")
@json_option("Print the status as JSON.")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """The head, what the view shows, and anything awaiting recovery or gc."""
    from promote.history import status

    with opened(ctx) as (ws, ledger):
        st = status(ws, ledger)
    if as_json:
        emit_json(st.to_dict())
    else:
        for line in st.lines():
            click.echo(line)


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (log_cmd, show_cmd, status_cmd)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
