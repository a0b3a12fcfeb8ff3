"""What both CLIs share: one place that maps errors to exit codes and messages."""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn

import click

from cas.errors import EXIT_INTERNAL, EXIT_USAGE, CasError


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


def progress_enabled() -> bool:
    """Progress bars only on a terminal; quiet when piped."""
    return sys.stderr.isatty()
