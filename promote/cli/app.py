"""`promote`: the command line of the promotion gate, and where its families meet.

`promote CAPSULE` is short for `promote run CAPSULE`. Each family of commands lives in
its own module (`promotion`, `verify`, `history`, `proofs`, `policy`, `remote`,
`attest`, `control`, `receipts`) and lists what it adds; this module only assembles them, so no
family imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from cas import _cli
from promote.cli import (
    attest,
    control,
    history,
    policy,
    promotion,
    proofs,
    receipts,
    remote,
    serve,
    verify,
)

__all__ = ["main", "run_main"]


class _DefaultRun(click.Group):
    """A group whose first word, when it names no command but an existing file, a
    digest or an option of `run`, starts a run: `promote X` = `promote run X`. A word that is neither (such
    as a mistyped `promote lgo`) is "no such command", with the nearest one.
    """

    _GROUP_FLAGS = frozenset({"-v", "--verbose", "-q", "--quiet", "-h", "--help", "--version"})

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
                if a not in self.commands and (a.startswith("-") or _is_capsule(a)):
                    args.insert(i, "run")
                break
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The group's options, then those of `promote CAPSULE`, then the commands."""
        click.Command.format_options(self, ctx, formatter)
        run = self.commands["run"]
        rows = [
            r
            for p in run.get_params(ctx)
            if isinstance(p, click.Option) and "--help" not in p.opts
            if (r := p.get_help_record(ctx))
        ]
        with formatter.section("Options of promote CAPSULE (promote run)"):
            formatter.write_dl(rows)
        self.format_commands(ctx, formatter)


def _is_capsule(word: str) -> bool:
    """Whether a first word that names no command is meant as a capsule: an existing
    path, a digest, or something spelled like a file (`x.json`, `dir/x`)."""
    import os

    return os.path.lexists(word) or word.startswith("blake3:") or "." in word or "/" in word


@click.group(cls=_DefaultRun, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    envvar="PROMOTE_ROOT",
    help="The workspace (default: found by walking up).",
)
@_cli.verbose_option
@_cli.quiet_option
@click.version_option(package_name="cas-promote", prog_name="promote")
@click.pass_context
def main(ctx: click.Context, root: Path | None, verbose: bool) -> None:
    """Promote artifacts from the store to authoritative paths, by reference.

    `promote CAPSULE` runs the gate (same as `promote run CAPSULE`). Exit codes:
    0 promoted, 2 invalid capsule, 3 digest or linkage failure, 4 denied by policy
    or allow-list, 5 conflict. Errors are one line on stderr: `promote: error: ...`,
    `promote: denied: ...` or `promote: conflict: ...` (with --json, an object on
    stdout). -v and -q are accepted anywhere on the command line.
    """
    ctx.obj = {"root": root, "verbose": verbose}


@click.group()
def ledger() -> None:
    """The hash-linked ledger."""


def run_main() -> NoReturn:
    _cli.run(main, "promote")


main.add_command(ledger)
_cli.add_common_commands(main, "promote")
for _family in (
    promotion,
    verify,
    history,
    proofs,
    receipts,
    policy,
    remote,
    attest,
    control,
    serve,
):
    for _cmd in _family.COMMANDS:
        main.add_command(_cmd)
    for _cmd in _family.LEDGER_COMMANDS:
        ledger.add_command(_cmd)
    for _cmd in getattr(_family, "KEY_COMMANDS", ()):
        attest.key_group.add_command(_cmd)
