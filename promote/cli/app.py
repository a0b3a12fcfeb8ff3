"""`promote`: the command line of the promotion gate, and where its families meet.

`promote CAPSULE` is short for `promote run CAPSULE`. Each family of commands lives in
its own module (`promotion`, `verify`, `history`, `proofs`, `policy`, `remote`) and
lists what it adds; this module only assembles them, so no family imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import click

from cas import _cli
from promote.cli import attest, history, policy, promotion, proofs, remote, verify

__all__ = ["main", "run_main"]


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


@click.group(cls=_DefaultRun, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    envvar="PROMOTE_ROOT",
    help="The workspace (default: found by walking up).",
)
@_cli.verbose_option
@click.version_option(package_name="cas-promote", prog_name="promote")
@click.pass_context
def main(ctx: click.Context, root: Path | None, verbose: bool) -> None:
    """Promote artifacts from the store to authoritative paths, by reference.

    `promote CAPSULE` runs the gate (same as `promote run CAPSULE`). Exit codes:
    0 promoted, 2 invalid capsule, 3 digest or linkage failure, 4 denied by policy
    or allow-list, 5 conflict.
    """
    ctx.obj = {"root": root, "verbose": verbose}


@click.group()
def ledger() -> None:
    """The hash-linked ledger."""


def run_main() -> NoReturn:
    _cli.run(main, "promote")


main.add_command(ledger)
for _family in (promotion, verify, history, proofs, policy, remote, attest):
    for _cmd in _family.COMMANDS:
        main.add_command(_cmd)
    for _cmd in _family.LEDGER_COMMANDS:
        ledger.add_command(_cmd)
