"""What both CLIs print and how they fail, without click: one place that maps errors to
exit codes and messages, the progress line, JSON output. `cas._cli` adds click's
options and commands on top; `cas put` runs on this module alone (`cas._entry`), so that
one call does not pay for importing click."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from cas.errors import EXIT_CONFLICT, EXIT_DENIED, EXIT_INTERNAL, EXIT_USAGE, CasError

#: Set by `-q`/`--quiet`: print results and errors only (no progress, no notes).
QUIET = False

#: The flags `guarded` accepts anywhere before `--`, and moves in front of the subcommand.
ANYWHERE = frozenset({"-v", "--verbose", "-q", "--quiet"})


def echo(message: str, err: bool = False, nl: bool = True) -> None:
    """Print `message` on stdout (or stderr) and flush, as `click.echo` does a string."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    stream.write(message + "\n" if nl else message)
    stream.flush()


def info(message: str, err: bool = False) -> None:
    """A note that is not a result (such as "initialized ..."): left out under `-q`."""
    if not QUIET:
        echo(message, err=err)


#: The word each exit code's errors start with, after the program's name.
_KINDS = {EXIT_DENIED: "denied", EXIT_CONFLICT: "conflict"}


def error_line(prog: str, message: str, code: int) -> str:
    """`prog: error: message` (`denied:` for exit 4, `conflict:` for exit 5)."""
    return f"{prog}: {_KINDS.get(code, 'error')}: {message}"


def error_doc(message: str, code: int) -> dict[str, Any]:
    """An error as `--json` prints it on stdout."""
    return {"error": {"kind": _KINDS.get(code, "error"), "message": message, "exit_code": code}}


def emit_json(data: Any) -> None:
    """Print JSON as every command's `--json` does: sorted keys, two-space indent."""
    import json

    echo(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False))


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
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    raise Interrupted(signum)


SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def hoist(args: list[str]) -> list[str]:
    """`args` with `-v`/`-q` (anywhere before `--`) moved to the front."""
    end = args.index("--") if "--" in args else len(args)
    flags = [a for a in args[:end] if a in ANYWHERE]
    rest = [a for a in args[:end] if a not in ANYWHERE]
    return flags + rest + args[end:]


#: What `guarded` calls: the (hoisted) arguments and `fail(message, code)`; an exit code.
Call = Callable[[list[str], Callable[[str, int], NoReturn]], object]


def guarded(call: Call, prog: str) -> NoReturn:
    """Run `call`; print one line per error and exit with its code.

    Errors are `prog: error: ...` (`denied:` for exit 4, `conflict:` for exit 5) on
    stderr, or with `--json` an object `{"error": {...}}` on stdout. The traceback is
    shown only with `-v`/`--verbose` (or `CAS_DEBUG=1`). SIGINT, SIGTERM and SIGHUP
    unwind the command (its temp files are removed), then exit 128+n with one line.
    """
    args = hoist(sys.argv[1:])
    words = args[: args.index("--")] if "--" in args else args
    verbose = bool(os.environ.get("CAS_DEBUG")) or any(a in ("-v", "--verbose") for a in words)
    as_json = "--json" in words
    for sig in SIGNALS:
        signal.signal(sig, _on_signal)

    def fail(message: str, code: int) -> NoReturn:
        if as_json:
            emit_json(error_doc(message, code))
        else:
            echo(error_line(prog, message, code), err=True)
        sys.exit(code)

    try:
        rc = call(args, fail)
    except Interrupted as e:
        for sig in SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        fail(f"interrupted by {signal.Signals(e.signum).name}", 128 + e.signum)
    except CasError as e:
        if verbose:
            _print_traceback()
        fail(str(e), e.exit_code)
    except BrokenPipeError:
        # The reader went away (`cas cat X | head`): not our failure.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_INTERNAL)
    except OSError as e:
        if verbose:
            _print_traceback()
        fail(*os_error(e))
    except Exception as e:
        if verbose:
            _print_traceback()
        fail(f"internal error: {e or 'unexpected failure'} (-v shows where)", EXIT_INTERNAL)
    sys.exit(rc if isinstance(rc, int) else 0)


def _print_traceback() -> None:
    import traceback  # only with -v: its import is a tenth of a put's start-up

    traceback.print_exc()


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
        echo(text, err=err, nl=False)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.clear()


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def progress_enabled() -> bool:
    """Progress bars only on a terminal, and not under `-q`; quiet when piped."""
    return sys.stderr.isatty() and not QUIET
