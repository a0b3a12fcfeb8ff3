"""The commands that change a workspace: set it up, promote, revert, recover.

promote init [DIR] [--allow PREFIX]... [--mode symlink|copy] [--ci github] [--force]
promote run CAPSULE [--dry-run] [--json] [--engine E]   (or just: promote CAPSULE)
promote revert --to SEQ [--dry-run] [--json] [--engine E]
promote recover
promote capsule new --target PATH=DIGEST ... --attestation DIGEST ... [-o FILE]
"""

from __future__ import annotations

from pathlib import Path

import click

from cas._cli import emit_json, info, json_option, path_option
from promote.cli.common import (
    MODES,
    dry_run_option,
    engine_option,
    open_ledger,
    opened,
    print_outcome,
    workspace,
    write_output,
)


@click.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="PREFIX",
    help="Allow-listed path prefix (repeatable; default release/).",
)
@click.option("--mode", type=MODES, help="How the view is materialized.")
@click.option(
    "--ci", type=click.Choice(["github"]), help="Also write the CI gate workflow for this host."
)
@click.option(
    "--force", is_flag=True, help="Rewrite an existing workspace's config with these options."
)
def init(
    directory: Path | None, allow: tuple[str, ...], mode: str | None, ci: str | None, force: bool
) -> None:
    """Lay out a workspace: config, default policy, execution/, store, empty view.

    The options are validated before anything is written; on an existing workspace,
    options that differ from its config are refused (exit 2) unless --force.
    """
    from promote.view import View
    from promote.workspace import Workspace

    ws = Workspace.init(directory or Path.cwd(), list(allow) or None, mode, force=force)
    View(ws).sync(open_ledger(ws))
    info(f"initialized promote workspace {ws.root}")
    if ci:
        from promote.ci import write_workflow

        path, written = write_workflow(ws, ci)
        info(f"wrote {path}" if written else f"kept {path} (delete it to regenerate)")


@click.command()
@click.argument("capsule")
@json_option("Print the report object.")
@dry_run_option("print the plan, write nothing.")
@engine_option
@click.pass_context
def run(ctx: click.Context, capsule: str, as_json: bool, dry_run: bool, engine: str | None) -> None:
    """Promote CAPSULE (a capsule file, or a capsule digest in the store)."""
    from promote._run import run_capsule

    ctx.exit(run_capsule(ctx.find_root().obj["root"], capsule, as_json, dry_run, engine))


@click.command(name="revert")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="SEQ",
    help="The entry whose state to bring back (a number, or -N: N before the head).",
)
@dry_run_option("the capsule and the plan.")
@json_option("Print the revert and the report.")
@engine_option
@click.pass_context
def revert_cmd(
    ctx: click.Context, to: str, dry_run: bool, as_json: bool, engine: str | None
) -> None:
    """Bring the paths changed since entry SEQ back to their state then, as a new entry.

    The capsule guards every path with what it holds now and the ledger with its
    head; its evidence is the CHECK reports recorded for the objects it restores. It
    goes through the same gate as any promotion; history is never rewritten.
    """
    from promote.history import resolve_seq
    from promote.revert import revert

    with opened(ctx) as (ws, ledger):
        seq = 0 if to.strip() == "0" else resolve_seq(ledger, to)
        plan, outcome = revert(ws, ledger, seq, engine=engine, dry_run=dry_run)
    if as_json:
        emit_json({**outcome.to_dict(), "revert": plan.to_dict()})
        ctx.exit(outcome.exit_code)
    n = len(plan.capsule.targets)
    click.echo(f"revert to entry {plan.to} {plan.to_entry}: {n} path{'s' if n != 1 else ''}")
    if plan.check_report is None:
        froms = ", ".join(str(s) for s, _ in plan.sources)
        n = len(plan.capsule.evidence)
        many = "s" if len(plan.sources) != 1 else ""
        click.echo(
            f"evidence: the {n} attestation{'s' if n != 1 else ''} of entr{'ies' if many else 'y'}"
            f" {froms}"
        )
    elif plan.combined:
        froms = ", ".join(f"entry {s} ({r.digest})" for s, r in plan.sources)
        click.echo(f"evidence: combined CHECK report {plan.check_report.digest} from {froms}")
    else:
        ((s, r),) = plan.sources
        click.echo(f"evidence: the CHECK report of entry {s} ({r.digest})")
    if dry_run:
        click.echo("capsule:")
        click.echo(plan.capsule_bytes.decode(), nl=False)
    print_outcome(outcome)
    ctx.exit(outcome.exit_code)


@click.command()
@click.pass_context
def recover(ctx: click.Context) -> None:
    """Finish or undo what a crash interrupted, and make the view agree with the ledger."""
    from promote.recovery import recover as do_recover

    ws = workspace(ctx)
    for line in do_recover(ws, open_ledger(ws)):
        click.echo(line)


@click.group()
def capsule() -> None:
    """Build capsules, so nobody hand-writes JSON."""


@capsule.command(name="new")
@click.option(
    "--target",
    "targets",
    multiple=True,
    metavar="PATH=DIGEST",
    help="A path and the object it should hold (repeatable).",
)
@click.option(
    "--delete",
    "deletes",
    multiple=True,
    metavar="PATH",
    help="A path to remove (repeatable; no evidence need cover it).",
)
@click.option(
    "--attestation",
    "attestations",
    multiple=True,
    metavar="DIGEST",
    help="A signed attestation in the store, as 'promote attest' printed it (repeatable).",
)
@click.option(
    "--check-report",
    metavar="DIGEST",
    help="Instead: an unsigned CHECK report in the store (a promote-capsule/v1, which the"
    " default policy refuses).",
)
@click.option(
    "--expect",
    "expects",
    multiple=True,
    metavar="PATH=DIGEST|absent",
    help="Compare-and-swap guard on a path.",
)
@click.option("--expect-current", is_flag=True, help="Guard every target with what it holds now.")
@click.option(
    "--base", metavar="HEAD|current", help="Guard on the ledger head ('current' for now)."
)
@click.option("--builder", help="meta.builder")
@click.option("--source-revision", help="meta.source_revision")
@path_option("-o", "--output", required=True, help="Where to write the capsule ('-' for stdout).")
@click.pass_context
def capsule_new(
    ctx: click.Context,
    targets: tuple[str, ...],
    deletes: tuple[str, ...],
    attestations: tuple[str, ...],
    check_report: str | None,
    expects: tuple[str, ...],
    expect_current: bool,
    base: str | None,
    builder: str | None,
    source_revision: str | None,
    output: Path,
) -> None:
    """Write a valid capsule; sizes are looked up in the store.

    The evidence is --attestation (a promote-capsule/v2) or --check-report (v1)."""
    from promote.capsules import new_capsule

    ws = workspace(ctx)
    data = new_capsule(
        ws,
        open_ledger(ws),
        targets,
        check_report,
        expects,
        expect_current,
        base,
        builder,
        source_revision,
        deletes,
        attestations,
    )
    if str(output) == "-":
        click.echo(data.decode(), nl=False)
    else:
        write_output(output, data)
        click.echo(f"wrote {output}")


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (init, run, revert_cmd, recover, capsule)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
