"""What both CLIs share: one place that maps errors to exit codes and messages, and the
options both spell the same way."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from click.decorators import FC

from cas import _out
from cas._out import (
    Interrupted,
    Progress,
    emit_json,
    error_doc,
    error_line,
    guarded,
    info,
    os_error,
    plural,
    progress_enabled,
)
from cas.errors import EXIT_INTEGRITY, EXIT_USAGE

__all__ = [
    "Interrupted",
    "Progress",
    "add_common_commands",
    "emit_json",
    "error_doc",
    "error_line",
    "info",
    "jobs_option",
    "json_option",
    "os_error",
    "path_option",
    "plural",
    "progress_enabled",
    "quiet_option",
    "report_problems",
    "run",
    "unknown_command",
    "verbose_option",
]

#: `-v`/`--verbose` of both groups; `run` moves it (and `-q`) to the front, so that it
#: is accepted anywhere on the command line.
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`-q`: print results and errors only (`cas._out.QUIET`)."""
    _out.QUIET = _out.QUIET or value


#: `-q`/`--quiet` of both groups (see `cas._out.QUIET`).
quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_set_quiet,
    help="Print only results and errors: no progress bar, no notes.",
)


def json_option(text: str) -> Callable[[FC], FC]:
    """`--json`, passed as `as_json`: print `text`'s JSON (see `emit_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=text)


#: `-j`/`--jobs N`: how many processes share the work (default: the cores this may use).
jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Processes that share the work (default: every core this may run on); for"
    " `cas put` to an S3 store, uploads at once (default 10, at most 32).",
)


def path_option(*decls: str, file_okay: bool = True, **attrs: Any) -> Callable[[FC], FC]:
    """An option whose value is a `pathlib.Path` (a directory only, without `file_okay`)."""
    return click.option(*decls, type=click.Path(path_type=Path, file_okay=file_okay), **attrs)


def unknown_command(name: str, choices: Sequence[str]) -> str:
    """`no such command 'lgo' (did you mean 'log'?)`."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"no such command {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def run(group: click.Group, prog: str) -> NoReturn:
    """Run a click group under `cas._out.guarded`: one line per error, its exit code.

    click's own errors are usage errors (exit 2), `click.Abort` an interruption (130).
    """

    def call(args: list[str], fail: Callable[[str, int], NoReturn]) -> object:
        try:
            return group.main(args=args, prog_name=prog, standalone_mode=False)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.Abort:
            fail("interrupted", 130)
        except click.exceptions.NoArgsIsHelpError as e:
            click.echo(e.format_message(), err=True)
            sys.exit(EXIT_USAGE)
        except click.ClickException as e:
            fail(_click_message(e), EXIT_USAGE)

    guarded(call, prog)


def _click_message(e: click.ClickException) -> str:
    """click's message, with "no such command" in our words (and a suggestion)."""
    ctx = getattr(e, "ctx", None)
    found = re.match(r"No such command '(.*?)'\.", e.format_message())
    if found and ctx is not None and isinstance(ctx.command, click.Group):
        return unknown_command(found.group(1), ctx.command.list_commands(ctx))
    return e.format_message()


def add_common_commands(group: click.Group, prog: str) -> None:
    """`help [COMMAND]...` and `completion bash|zsh|fish`, the same on both programs."""
    group.add_command(_help_command())
    group.add_command(_completion_command(prog))


def _help_command() -> click.Command:
    @click.command(name="help")
    @click.argument("command", nargs=-1)
    @click.pass_context
    def help_(ctx: click.Context, command: tuple[str, ...]) -> None:
        """Show the help of the program, or of COMMAND (`help ledger verify`)."""
        at = ctx.find_root()
        for name in command:
            group = at.command
            sub = group.get_command(at, name) if isinstance(group, click.Group) else None
            if sub is None:
                if not isinstance(group, click.Group):
                    raise click.UsageError(f"{at.command_path} has no subcommands")
                raise click.UsageError(unknown_command(name, group.list_commands(at)))
            at = click.Context(sub, info_name=name, parent=at)
        click.echo(at.get_help())

    return help_


def _completion_command(prog: str) -> click.Command:
    var = f"_{prog.upper()}_COMPLETE"

    @click.command(name="completion")
    @click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
    @click.pass_context
    def completion(ctx: click.Context, shell: str) -> None:
        """Print the shell completion script for SHELL (click's shell completion).

        \b
        bash:  eval "$(PROG completion bash)"       in ~/.bashrc
        zsh:   eval "$(PROG completion zsh)"        in ~/.zshrc
        fish:  PROG completion fish > ~/.config/fish/completions/PROG.fish
        """
        from click.shell_completion import get_completion_class

        cls = get_completion_class(shell)
        assert cls is not None  # the Choice admits only click's own shells
        root = ctx.find_root().command
        click.echo(cls(root, {}, prog, var).source(), nl=False)

    assert completion.help is not None
    completion.help = completion.help.replace("PROG", prog)
    return completion


def report_problems(ctx: click.Context, problems: Sequence[Any], as_json: bool, what: str) -> None:
    """Print check findings (one line each, or JSON) and exit 3 when there are any."""
    if as_json:
        emit_json({"ok": not problems, "problems": [p.to_dict() for p in problems]})
    else:
        for p in problems:
            where = f" {p.digest}" if p.digest else ""
            click.echo(f"{p.kind}:{where} {p.location}: {p.detail}")
        if problems:
            click.echo(f"{what}: {plural(len(problems), 'problem')}", err=True)
        else:
            info(f"{what}: clean")
    if problems:
        ctx.exit(EXIT_INTEGRITY)
