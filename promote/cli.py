"""`promote`: the command line of the promotion gate.

`promote CAPSULE` is short for `promote run CAPSULE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click

from cas import _cli
from cas._cli import emit_json, report_problems
from cas.errors import UsageError


class _DefaultRun(click.Group):
    """A group whose unknown first word is a capsule: `promote X` = `promote run X`."""

    _GROUP_FLAGS = frozenset({"-v", "--verbose", "-h", "--help", "--version"})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        args = list(args)
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--root":
                i += 2
            elif a.startswith("--root=") or a in self._GROUP_FLAGS:
                i += 1
            else:
                if a not in self.commands:
                    args.insert(i, "run")
                break
        return super().parse_args(ctx, args)


def _ws(ctx: click.Context) -> Any:
    from promote.workspace import Workspace

    return Workspace.find(ctx.obj["root"])


def _ledger(ws: Any) -> Any:
    from promote.verify import open_ledger

    return open_ledger(ws)


@click.group(cls=_DefaultRun, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    envvar="PROMOTE_ROOT",
    help="The workspace (default: found by walking up).",
)
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="cas-promote", prog_name="promote")
@click.pass_context
def main(ctx: click.Context, root: Path | None, verbose: bool) -> None:
    """Promote artifacts from the store to authoritative paths, by reference.

    `promote CAPSULE` runs the gate (same as `promote run CAPSULE`). Exit codes:
    0 promoted, 2 invalid capsule, 3 digest or linkage failure, 4 denied by policy
    or allow-list, 5 conflict.
    """
    ctx.obj = {"root": root, "verbose": verbose}


@main.command()
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="PREFIX",
    help="Allow-listed path prefix (repeatable; default release/).",
)
@click.option(
    "--mode", type=click.Choice(["symlink", "copy"]), help="How the view is materialized."
)
@click.option(
    "--ci", type=click.Choice(["github"]), help="Also write the CI gate workflow for this host."
)
def init(directory: Path | None, allow: tuple[str, ...], mode: str | None, ci: str | None) -> None:
    """Lay out a workspace: config, default policy, execution/, store, empty view."""
    from promote.view import View
    from promote.workspace import Workspace

    ws = Workspace.init(directory or Path.cwd(), list(allow) or None, mode)
    View(ws).sync(_ledger(ws))
    click.echo(f"initialized promote workspace {ws.root}")
    if ci:
        from promote.ci import write_workflow

        path, written = write_workflow(ws, ci)
        click.echo(f"wrote {path}" if written else f"kept {path} (delete it to regenerate)")


def _print_outcome(outcome: Any) -> None:
    o = outcome
    if o.status == "promoted" and o.ledger:
        click.echo(f"promoted: ledger entry {o.ledger.seq} {o.ledger.entry}")
        if o.reasons:  # committed, but something after the commit point failed
            click.echo("promote: warning: " + "; ".join(o.reasons), err=True)
    else:
        click.echo(
            f"{o.status}" + (f": {o.reasons[0]}" if len(o.reasons) == 1 else ""),
            err=o.exit_code != 0,
        )
        if len(o.reasons) > 1:
            for r in o.reasons:
                click.echo(f"  - {r}", err=o.exit_code != 0)
    for c in o.changes:
        before = c.before.digest if c.before else "absent"
        click.echo(f"  {c.path}: {before} -> {c.after.digest if c.after else 'absent'}")
    if o.entry is not None:
        click.echo("ledger entry it would write:")
        click.echo(o.entry.data.decode())


@main.command()
@click.argument("capsule")
@click.option("--json", "as_json", is_flag=True, help="Print the report object.")
@click.option("--dry-run", is_flag=True, help="Steps 1-4 only: print the plan, write nothing.")
@click.option(
    "--engine",
    type=click.Choice(["regorus", "opa", "opa-rest"]),
    help="Override the configured policy engine.",
)
@click.pass_context
def run(ctx: click.Context, capsule: str, as_json: bool, dry_run: bool, engine: str | None) -> None:
    """Promote CAPSULE (a capsule file, or a capsule digest in the store)."""
    from promote.gate import promote

    ws = _ws(ctx)
    outcome = promote(ws, _ledger(ws), capsule, engine=engine, dry_run=dry_run)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        _print_outcome(outcome)
    ctx.exit(outcome.exit_code)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """The CI gate: the ledger, the pointers, and a view that matches them exactly."""
    from promote.verify import verify_workspace

    ws = _ws(ctx)
    report_problems(ctx, verify_workspace(ws, _ledger(ws)), as_json, "verify")


@main.command()
@click.pass_context
def recover(ctx: click.Context) -> None:
    """Finish or undo what a crash interrupted, and make the view agree with the ledger."""
    from promote.recovery import recover as do_recover

    ws = _ws(ctx)
    for line in do_recover(ws, _ledger(ws)):
        click.echo(line)


@main.group()
def ledger() -> None:
    """The hash-linked ledger."""


@ledger.command(name="verify")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ledger_verify(ctx: click.Context, as_json: bool) -> None:
    """Re-hash the chain, replay it, and check every object it references."""
    from promote.verify import verify_workspace

    ws = _ws(ctx)
    report_problems(ctx, verify_workspace(ws, _ledger(ws), view=False), as_json, "ledger verify")


@main.group()
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
    help="A path to remove (repeatable; the CHECK report need not cover it).",
)
@click.option(
    "--check-report", required=True, metavar="DIGEST", help="The CHECK report in the store."
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
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the capsule ('-' for stdout).",
)
@click.pass_context
def capsule_new(
    ctx: click.Context,
    targets: tuple[str, ...],
    deletes: tuple[str, ...],
    check_report: str,
    expects: tuple[str, ...],
    expect_current: bool,
    base: str | None,
    builder: str | None,
    source_revision: str | None,
    output: Path,
) -> None:
    """Write a valid capsule; sizes are looked up in the store."""
    from promote.capsules import new_capsule

    ws = _ws(ctx)
    data = new_capsule(
        ws,
        _ledger(ws),
        targets,
        check_report,
        expects,
        expect_current,
        base,
        builder,
        source_revision,
        deletes,
    )
    if str(output) == "-":
        click.echo(data.decode(), nl=False)
    else:
        from cas.fsutil import atomic_write

        try:
            atomic_write(output, data)
        except OSError as e:
            raise UsageError(f"{output}: {e.strerror}") from None
        click.echo(f"wrote {output}")


def run_main() -> NoReturn:
    _cli.run(main, "promote")


from promote.cli_remote import register as _register_remote  # noqa: E402

_register_remote(main)

from promote.cli_audit import register as _register_audit  # noqa: E402

_register_audit(main)

from promote.cli_history import register as _register_history  # noqa: E402

_register_history(main)
