"""What both CLIs share: one place that maps errors to exit codes and messages, and the
options both spell the same way."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from click.decorators import FC

from cas.errors import (
    EXIT_CONFLICT,
    EXIT_DENIED,
    EXIT_INTEGRITY,
    EXIT_INTERNAL,
    EXIT_USAGE,
    CasError,
)

#: `-v`/`--verbose` of both groups; `run` moves it (and `-q`) to the front, so that it
#: is accepted anywhere on the command line.
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")

#: Set by `-q`/`--quiet`: print results and errors only (no progress, no notes).
QUIET = False


def _set_quiet(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    global QUIET
    QUIET = QUIET or value


#: `-q`/`--quiet` of both groups (see `QUIET`).
quiet_option = click.option(
    "-q",
    "--quiet",
    is_flag=True,
    expose_value=False,
    callback=_set_quiet,
    help="Print only results and errors: no progress bar, no notes.",
)

#: The flags `run` accepts anywhere before `--`, and moves in front of the subcommand.
_ANYWHERE = frozenset({"-v", "--verbose", "-q", "--quiet"})


def json_option(text: str) -> Callable[[FC], FC]:
    """`--json`, passed as `as_json`: print `text`'s JSON (see `emit_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=text)


#: `-j`/`--jobs N`: how many processes share the work (default: the cores this may use).
jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Processes that share the work (default: every core this may run on).",
)


def path_option(*decls: str, file_okay: bool = True, **attrs: Any) -> Callable[[FC], FC]:
    """An option whose value is a `pathlib.Path` (a directory only, without `file_okay`)."""
    return click.option(*decls, type=click.Path(path_type=Path, file_okay=file_okay), **attrs)


def info(message: str, err: bool = False) -> None:
    """A note that is not a result (such as "initialized ..."): left out under `-q`."""
    if not QUIET:
        click.echo(message, err=err)


#: The word each exit code's errors start with, after the program's name.
_KINDS = {EXIT_DENIED: "denied", EXIT_CONFLICT: "conflict"}


def error_line(prog: str, message: str, code: int) -> str:
    """`prog: error: message` (`denied:` for exit 4, `conflict:` for exit 5)."""
    return f"{prog}: {_KINDS.get(code, 'error')}: {message}"


def error_doc(message: str, code: int) -> dict[str, Any]:
    """An error as `--json` prints it on stdout."""
    return {"error": {"kind": _KINDS.get(code, "error"), "message": message, "exit_code": code}}


def unknown_command(name: str, choices: Sequence[str]) -> str:
    """`no such command 'lgo' (did you mean 'log'?)`."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f"no such command {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def os_error(e: OSError) -> tuple[str, int]:
    """The one-line message and exit code of an OSError that reached the top.

    A missing or unreadable path is the user's to fix (exit 2), named with its path;
    anything else the system refused is exit 1. Never the exception's class name.
    """
    why = e.strerror or str(e) or "operating-system error"
    if isinstance(e, PermissionError):
        why = "permission denied"
    elif isinstance(e, FileNotFoundError):
        why = "no such file or directory"
    where = f"{e.filename}: " if e.filename is not None else ""
    if e.filename2 is not None:
        where = f"{e.filename} -> {e.filename2}: "
    usage = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
    return where + why, EXIT_USAGE if isinstance(e, usage) else EXIT_INTERNAL


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: unwind (so that temps are removed), then exit."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum: int, frame: object) -> None:
    # Once: a second signal during the clean-up gets the default action.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    raise Interrupted(signum)


_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _hoist(args: list[str]) -> list[str]:
    """`args` with `-v`/`-q` (anywhere before `--`) moved to the front."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in _ANYWHERE]
    rest = [a for a in args[:end] if a not in _ANYWHERE]
    return flags + rest + args[end:]


def run(group: click.Group, prog: str) -> NoReturn:
    """Run a click group; print one line per error and exit with its code.

    Errors are `prog: error: ...` (`denied:` for exit 4, `conflict:` for exit 5) on
    stderr, or with `--json` an object `{"error": {...}}` on stdout. The traceback is
    shown only with `-v`/`--verbose` (or `CAS_DEBUG=1`). SIGINT, SIGTERM and SIGHUP
    unwind the command (its temp files are removed), then exit 128+n with one line.
    """
    args = _hoist(sys.argv[1:])
    words = args[: args.index("--")] if "--" in args else args
    verbose = bool(os.environ.get("CAS_DEBUG")) or any(a in ("-v", "--verbose") for a in words)
    as_json = "--json" in words
    for sig in _SIGNALS:
        signal.signal(sig, _on_signal)

    def fail(message: str, code: int) -> NoReturn:
        if as_json:
            emit_json(error_doc(message, code))
        else:
            click.echo(error_line(prog, message, code), err=True)
        sys.exit(code)

    try:
        rc = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Interrupted as e:
        for sig in _SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        fail(f"interrupted by {signal.Signals(e.signum).name}", 128 + e.signum)
    except click.Abort:
        fail("interrupted", 130)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.format_message(), err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as e:
        fail(_click_message(e), EXIT_USAGE)
    except CasError as e:
        if verbose:
            traceback.print_exc()
        fail(str(e), e.exit_code)
    except BrokenPipeError:
        # The reader went away (`cas cat X | head`): not our failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_INTERNAL)
    except OSError as e:
        if verbose:
            traceback.print_exc()
        fail(*os_error(e))
    except Exception as e:
        if verbose:
            traceback.print_exc()
        fail(f"internal error: {e or 'unexpected failure'} (-v shows where)", EXIT_INTERNAL)
    sys.exit(rc if isinstance(rc, int) else 0)


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


def emit_json(data: Any) -> None:
    """Print JSON as every command's `--json` does: sorted keys, two-space indent."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


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


def plural(n: int, word: str) -> str:
    """`1 problem`, `2 problems`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


class Progress:
    """One line of progress on stderr, redrawn in place: only on a terminal, not under
    `-q`. `echo` clears it before printing a result line, so the two never share a line.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = progress_enabled()
        self._shown = ""

    def update(self, done: int, total: int, unit: str = "bytes") -> None:
        if not self.enabled:
            return
        pct = 100 * done // total if total else 100
        count = f"{_mib(done)}/{_mib(total)} MiB" if unit == "bytes" else f"{done}/{total}"
        text = f"{self.label} {pct:3d}% {count}"
        if text != self._shown:
            sys.stderr.write(f"\r{text}\x1b[K")
            sys.stderr.flush()
            self._shown = text

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = ""

    def echo(self, text: str, err: bool = False) -> None:
        """Print `text` (lines, each ending in a newline) on a line of its own."""
        self.clear()
        click.echo(text, nl=False, err=err)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and not under `-q`; quiet when piped."""
    return sys.stderr.isatty() and not QUIET
