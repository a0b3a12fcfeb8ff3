"""The `cas` executable's entry point.

Builders call `cas put` once per artifact, so one call's fixed cost matters, and click's
import is a good part of it. `cas --version` and a plain `cas put` (the options below,
file names that do not start with `-`) therefore run without click; anything else (help,
`--`, stdin, another option, a typo) goes to the click application, `cas.cli`, which
also gives every error message about the command line itself.
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

#: Options a plain put may carry, and whether each takes a value.
_GLOBAL = {"--store": True, "-q": False, "--quiet": False, "-v": False, "--verbose": False}
_PUT = {
    "--json": False,
    "-r": False,
    "--recursive": False,
    "-j": True,
    "--jobs": True,
    "-q": False,
    "--quiet": False,
    "-v": False,
    "--verbose": False,
}


def plain_put(args: list[str]) -> dict[str, Any] | None:
    """`cas put`'s settings, if `args` is a put that needs nothing of click; else None."""
    got: dict[str, Any] = {"store": None, "files": [], "recursive": False, "json": False}
    got["jobs"] = got["quiet"] = None
    allowed = _GLOBAL
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if allowed is _GLOBAL and arg == "put":
            allowed = _PUT
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name.startswith("-j") and len(name) > 2 and allowed is _PUT and not eq:
            name, value, eq = "-j", name[2:], "="
        if not name.startswith("-"):
            if allowed is _GLOBAL:
                return None  # another command
            got["files"].append(arg)
            continue
        if name not in allowed or (eq and not allowed[name]):
            return None
        if allowed[name] and not eq:
            if i == len(args) or args[i].startswith("-"):
                return None
            value = args[i]
            i += 1
        if name == "--store":
            got["store"] = value
        elif name in ("-j", "--jobs"):
            if not value.isdigit() or not value.isascii() or int(value) < 1:
                return None
            got["jobs"] = int(value)
        elif name in ("-r", "--recursive"):
            got["recursive"] = True
        elif name == "--json":
            got["json"] = True
        elif name in ("-q", "--quiet"):
            got["quiet"] = True
    if allowed is not _PUT or not got["files"]:
        return None
    return got


def run() -> NoReturn:
    args = sys.argv[1:]
    if args == ["--version"]:
        from cas._version import __version__

        sys.stdout.write(f"cas, version {__version__}\n")  # what click's version_option says
        sys.stdout.flush()
        sys.exit(0)
    put = plain_put(args) if "_CAS_COMPLETE" not in os.environ else None
    if put is not None:
        from cas import _out
        from cas._put import put_files

        _out.QUIET = bool(put["quiet"])
        _out.guarded(
            lambda _args, _fail: put_files(
                put["store"], put["files"], put["recursive"], put["json"], put["jobs"]
            ),
            "cas",
        )
    from cas.cli import run as run_cli

    run_cli()
