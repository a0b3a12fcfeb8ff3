"""The commands that check a workspace, or a ledger without one.

promote verify [--checkpoint FILE [--witnesses N --witness-key W.vkey ...]
               [--log-key LOG.vkey]] [--allow-unsigned] [--replay] [--since-checkpoint]
               [--json]
                                            the ledger, the pointers, the view
promote ledger verify [the same options]    the ledger and the pointers only

--checkpoint takes a C2SP checkpoint (signed by the runner key, or --log-key; with
--witnesses N, cosigned by N of the --witness-key keys) or the older JSON one (first
byte `{`). Too few cosignatures, or a note the log did not sign: exit 3, one line; a
checkpoint the ledger does not extend (forked, rolled back): a `rollback` finding, exit
3; malformed: exit 2. --since-checkpoint checks only the entries after the workspace's
checkpoint (ADR 15).
promote verify-tree [--staged] [--json]     the gate without the store (pre-commit, CI)
promote ledger verify-chain [DIR] [--store STORE] [--allow-unsigned] [--json]
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from cas._cli import json_option, path_option, report_problems
from cas.errors import UsageError
from promote.cli.common import (
    open_ledger,
    workspace,
)

#: Every check's --json: `report_problems`'s document.
_findings_json = json_option("Print the findings as JSON.")

_allow_unsigned = click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept unsigned promote-ledger-entry/v1 entries (checking what applies to them).",
)
_replay = click.option(
    "--replay",
    is_flag=True,
    help="Also evaluate each entry's recorded policy on its recorded input again, and"
    " require the recorded decision bytes.",
)
_checkpoint = path_option(
    "--checkpoint",
    "checkpoint",
    help="A checkpoint kept elsewhere ('promote ledger checkpoint', C2SP, or its older"
    " --json form): the ledger must extend it.",
)
_witnesses = click.option(
    "--witnesses",
    type=click.IntRange(min=0),
    default=0,
    help="With --checkpoint: require this many cosignatures by --witness-key keys.",
)
_witness_keys = click.option(
    "--witness-key",
    "witness_keys",
    multiple=True,
    help="A witness's vkey, inline or a file (repeatable).",
)
_since_checkpoint = click.option(
    "--since-checkpoint",
    is_flag=True,
    help="Check only the entries after the workspace's checkpoint (.promote/checkpoint.json),"
    " from its last entry, when its frontier vouches for it; else every entry, saying so."
    " It trusts the verification that wrote the checkpoint: keep CI on the full check.",
)
_log_key = click.option(
    "--log-key",
    help="With --checkpoint: the log's vkey (default: the runner key, named as the origin).",
)


def _requirement(
    checkpoint: Path | None, witnesses: int, witness_keys: tuple[str, ...], log_key: str | None
) -> dict[str, Any]:
    """verify_workspace's checkpoint arguments; a usage error (2) when they do not fit."""
    from promote.cli.receipts import _witness_vkey

    if checkpoint is None and (witnesses or witness_keys or log_key):
        raise UsageError("--witnesses, --witness-key and --log-key go with --checkpoint")
    wits = [_witness_vkey(k) for k in witness_keys]
    if witnesses > len(wits):
        raise UsageError(f"--witnesses {witnesses}: only {len(wits)} --witness-key given")
    return {
        "witnesses": [w if w.sig_type == 0x04 else w.cosignature() for w in wits],
        "require": witnesses,
        "log_key": _witness_vkey(log_key) if log_key else None,
    }


def _ledger_checks(command: Callable[..., None]) -> Callable[..., None]:
    """The options `verify` and `ledger verify` share."""
    for option in reversed(
        (
            _checkpoint,
            _witnesses,
            _witness_keys,
            _log_key,
            _allow_unsigned,
            _replay,
            _since_checkpoint,
            _findings_json,
        )
    ):
        command = option(command)
    return click.pass_context(command)


def _verify(
    ctx: click.Context,
    what: str,
    view: bool,
    checkpoint: Path | None,
    witnesses: int,
    witness_keys: tuple[str, ...],
    log_key: str | None,
    allow_unsigned: bool,
    replay: bool,
    since_checkpoint: bool,
    as_json: bool,
) -> None:
    """`verify_workspace` with the shared options; its findings reported as `what`."""
    from promote.verify import verify_workspace

    req = _requirement(checkpoint, witnesses, witness_keys, log_key)
    ws = workspace(ctx)
    notes: list[str] = []
    problems = verify_workspace(
        ws,
        open_ledger(ws),
        view=view,
        checkpoint=checkpoint,
        allow_unsigned=allow_unsigned,
        replay=replay,
        since_checkpoint=since_checkpoint,
        notes=notes,
        **req,
    )
    for note in notes:
        click.echo(f"{what}: {note}", err=True)
    report_problems(ctx, problems, as_json, what)


@click.command()
@_ledger_checks
def verify(ctx: click.Context, **options: Any) -> None:
    """The CI gate: the ledger (every entry re-justified), the pointers, and a view
    that matches them exactly. Clean, it moves .promote/checkpoint.json forward."""
    _verify(ctx, "verify", True, **options)


@click.command(name="verify")
@_ledger_checks
def ledger_verify(ctx: click.Context, **options: Any) -> None:
    """Re-hash the chain, replay it, check every object it references, and
    re-justify every entry: signed by a runner of the trust roots pinned before it,
    its changes exactly its capsule's targets, an allow decision on the input rebuilt
    from its evidence. Exit 3 naming each entry that fails, or a checkpoint the ledger
    does not extend."""
    _verify(ctx, "ledger verify", False, **options)


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
    from promote.ci import staged_workspaces, tree_ledger, tree_store, verify_tree

    root = ctx.find_root().obj["root"]
    if not staged:
        ws = workspace(ctx)
        found_problems = verify_tree(ws, tree_ledger(ws), tree_store(ws))
        report_problems(ctx, found_problems, as_json, "verify-tree")
        return
    problems: list[Problem] = []
    with staged_workspaces(Path.cwd(), Path(root) if root else None) as found:
        for prefix, real, ws in found:
            for p in verify_tree(ws, tree_ledger(ws), tree_store(real)):
                problems.append(Problem(p.kind, prefix + p.location, p.detail, p.digest))
    report_problems(ctx, sorted(problems), as_json, "verify-tree --staged")


@click.command(name="verify-chain")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--store",
    metavar="STORE",
    help="Also check every object the entries name, in this store (a directory or s3://).",
)
@_allow_unsigned
@_findings_json
@click.pass_context
def verify_chain_cmd(
    ctx: click.Context,
    directory: Path | None,
    store: str | None,
    allow_unsigned: bool,
    as_json: bool,
) -> None:
    """The ledger chain and HEAD of DIRECTORY (default: the workspace's), no store needed.

    Checks that every entry is canonical, that seq and prev link them, that replaying
    the changes gives every state digest, and that HEAD names the last entry. With
    --store, also every object the entries reference, and re-justifies every entry
    (as `promote ledger verify`).
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
    problems, _ = verify_chain(
        ledger, open_store(store) if store else None, allow_unsigned=allow_unsigned
    )
    report_problems(ctx, problems, as_json, "ledger verify-chain")


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (verify, verify_tree_cmd)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = (ledger_verify, verify_chain_cmd)
