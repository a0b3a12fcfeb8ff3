"""The commands that check a workspace, or a ledger without one.

promote verify [--json]                     the ledger, the pointers, the view
promote ledger verify [--json]              the ledger and the pointers only
promote verify-tree [--staged] [--json]     the gate without the store (pre-commit, CI)
promote ledger verify-chain [DIR] [--store STORE] [--json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cas._cli import json_option, report_problems
from cas.errors import UsageError
from promote.cli.common import (
    open_ledger,
    workspace,
)

#: Every check's --json: `report_problems`'s document.
_findings_json = json_option("Print the findings as JSON.")


@click.command()
@_findings_json
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """The CI gate: the ledger, the pointers, and a view that matches them exactly."""
    from promote.verify import verify_workspace

    ws = workspace(ctx)
    report_problems(ctx, verify_workspace(ws, open_ledger(ws)), as_json, "verify")


@click.command(name="verify")
@_findings_json
@click.pass_context
def ledger_verify(ctx: click.Context, as_json: bool) -> None:
    """Re-hash the chain, replay it, and check every object it references."""
    from promote.verify import verify_workspace

    ws = workspace(ctx)
    report_problems(
        ctx, verify_workspace(ws, open_ledger(ws), view=False), as_json, "ledger verify"
    )


@click.command(name="verify-tree")
@click.option(
    "--staged",
    is_flag=True,
    help="Check what is about to be committed (the git index), in every workspace it holds.",
)
@_findings_json
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
        ws = workspace(ctx)
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
@_findings_json
@click.pass_context
def verify_chain_cmd(
    ctx: click.Context, directory: Path | None, store: str | None, as_json: bool
) -> None:
    """The ledger chain and HEAD of DIRECTORY (default: the workspace's), no store needed.

    Checks that every entry is canonical, that seq and prev link them, that replaying
    the changes gives every state digest, and that HEAD names the last entry. With
    --store, also every object the entries reference (as `promote ledger verify`).
    """
    from cas.stores import open_store
    from promote.ci import EmptyStore, tree_ledger, verify_chain
    from promote.ledger.files import FileLedger

    if directory is not None:
        if not directory.is_dir():
            raise UsageError(f"{directory}: no such ledger directory")
        ledger: Any = FileLedger(directory, EmptyStore())
    else:
        ledger = tree_ledger(workspace(ctx))
    problems, _ = verify_chain(ledger, open_store(store) if store else None)
    report_problems(ctx, problems, as_json, "ledger verify-chain")


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (verify, verify_tree_cmd)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = (ledger_verify, verify_chain_cmd)
