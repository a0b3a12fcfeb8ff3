"""`promote`: the command line of the promotion gate, and where its families meet.

`promote CAPSULE` is short for `promote run CAPSULE`. Each family of commands lives in
its own module (`promotion`, `verify`, `history`, `proofs`, `policy`, `remote`,
`attest`, `control`, `receipts`) and lists what it adds; this module only assembles them, so no
family imports another.

A family's module is imported when one of its commands is looked up, not before:
`promote CAPSULE` imports `promotion` alone, not the web view, the proofs or the
receipts (CI calls `promote` once a release, so its start-up counts; ADR 16). Listing
the commands (help, a typo's suggestion, `make docs`) imports them all.
`FAMILIES` names each family's commands; a test checks it against the modules.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import NoReturn

import click

from cas import _cli
from promote._run import FAMILIES
from promote._run import is_capsule as _is_capsule

__all__ = ["FAMILIES", "main", "run_main"]

_LOADED: set[str] = set()


def _load(family: str) -> None:
    """Import a family and register its commands (with `key`'s, those of the families
    that add to it)."""
    if family in _LOADED:
        return
    _LOADED.add(family)
    module = importlib.import_module(f"promote.cli.{family}")
    for cmd in module.COMMANDS:
        main.add_command(cmd)
    for cmd in module.LEDGER_COMMANDS:
        ledger.add_command(cmd)
    if family == "attest":
        for other, (_, _, keys) in FAMILIES.items():
            if keys:
                _load(other)
    for cmd in getattr(module, "KEY_COMMANDS", ()):
        _load("attest")
        importlib.import_module("promote.cli.attest").key_group.add_command(cmd)


class _Commands(MutableMapping[str, click.Command]):
    """A group's commands, each family's imported when one of its names is looked up,
    all of them when the names are listed."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names  # command -> family
        self._commands: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self._commands and name in self._names:
            _load(self._names[name])
        return self._commands[name]

    def __contains__(self, name: object) -> bool:
        return name in self._commands or name in self._names

    def __iter__(self) -> Iterator[str]:
        for family in dict.fromkeys(self._names.values()):
            _load(family)
        return iter(list(self._commands))

    def __len__(self) -> int:
        return len(self._commands.keys() | self._names.keys())

    def __setitem__(self, name: str, cmd: click.Command) -> None:
        self._commands[name] = cmd

    def __delitem__(self, name: str) -> None:
        del self._commands[name]


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


main.commands = _Commands(
    {name: family for family, (names, _, _) in FAMILIES.items() for name in names}
)
ledger.commands = _Commands(
    {name: family for family, (_, names, _) in FAMILIES.items() for name in names}
)
main.add_command(ledger)
_cli.add_common_commands(main, "promote")
