"""What both CLIs share: one place that maps errors to exit codes and messages, and the
options both spell the same way."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
from click.decorators import FC

from cas.errors import EXIT_INTEGRITY, EXIT_INTERNAL, EXIT_USAGE, CasError

#: `-v`/`--verbose` of both groups; `run` looks for it before click parses anything.
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Show tracebacks on errors.")


def json_option(text: str) -> Callable[[FC], FC]:
    """`--json`, passed as `as_json`: print `text`'s JSON (see `emit_json`)."""
    return click.option("--json", "as_json", is_flag=True, help=text)


def path_option(*decls: str, file_okay: bool = True, **attrs: Any) -> Callable[[FC], FC]:
    """An option whose value is a `pathlib.Path` (a directory only, without `file_okay`)."""
    return click.option(*decls, type=click.Path(path_type=Path, file_okay=file_okay), **attrs)


def run(group: click.Group, prog: str) -> NoReturn:
    """Run a click group; print one line per error and exit with its code.

    The traceback is shown only with `-v`/`--verbose` (or `CAS_DEBUG=1`).
    """
    args = sys.argv[1:]
    verbose = bool(os.environ.get("CAS_DEBUG")) or any(a in ("-v", "--verbose") for a in args)
    try:
        rc = group.main(args=args, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo(f"{prog}: error: interrupted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as e:
        click.echo(e.format_message(), err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as e:
        click.echo(f"{prog}: error: {e.format_message()}", err=True)
        sys.exit(EXIT_USAGE)
    except CasError as e:
        if verbose:
            traceback.print_exc()
        click.echo(f"{prog}: error: {e}", err=True)
        sys.exit(e.exit_code)
    except BrokenPipeError:
        # The reader went away (`cas cat X | head`): not our failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_INTERNAL)
    except Exception as e:
        if verbose:
            traceback.print_exc()
        click.echo(f"{prog}: internal error: {type(e).__name__}: {e}", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rc if isinstance(rc, int) else 0)


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
        click.echo(
            f"{what}: {'clean' if not problems else f'{len(problems)} problems'}",
            err=bool(problems),
        )
    if problems:
        ctx.exit(EXIT_INTEGRITY)


def progress_enabled() -> bool:
    """Progress bars only on a terminal; quiet when piped."""
    return sys.stderr.isatty()
