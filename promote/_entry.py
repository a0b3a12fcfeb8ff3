"""The `promote` executable's entry point.

CI calls `promote` once a release, so one call's fixed cost matters, and click's
import is a good part of it (ADR 18). A plain run, `promote [--root DIR] [run] CAPSULE`
with `--dry-run`, `--json`, `--engine E`, `-q` and `-v`, therefore runs without click;
anything else (help, `--version`, `--`, another option or command, a word that is not
a capsule, an option twice) goes to the click application, `promote.cli.app`, which
also gives every error message about the command line itself. Both call
`promote._run.run_capsule`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from promote._run import COMMANDS, ENGINES, is_capsule, run_capsule

__all__ = ["plain_run", "run"]


def plain_run(args: list[str]) -> dict[str, Any] | None:
    """A run's settings, if the hoisted `args` (`-v`/`-q` in front, as `cas._out.hoist`
    leaves them) are a run that needs nothing of click; else None."""
    got: dict[str, Any] = {"root": None, "capsule": None, "json": False, "dry_run": False}
    got["engine"] = None
    got["quiet"] = False
    in_run = False
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg in ("-q", "--quiet", "-v", "--verbose") and not in_run:
            got["quiet"] = got["quiet"] or arg in ("-q", "--quiet")
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in ("--root", "--engine") and not eq:
            if i == len(args):
                return None
            value = args[i]
            i += 1
        if value.startswith("-"):
            return None
        if not in_run:
            if name == "--root":
                if got["root"] is not None or not value:
                    return None
                got["root"] = value
                continue
            in_run = True
            if arg == "run":
                continue
            if not arg.startswith("-") and (arg in COMMANDS or not is_capsule(arg)):
                return None
        if name == "--engine":
            if got["engine"] is not None or value not in ENGINES:
                return None
            got["engine"] = value
        elif eq or name not in ("--dry-run", "--json"):
            if arg.startswith("-") or got["capsule"] is not None:
                return None
            got["capsule"] = arg
        elif got[name[2:].replace("-", "_")]:
            return None
        else:
            got[name[2:].replace("-", "_")] = True
    return got if got["capsule"] is not None else None


def run() -> NoReturn:
    from cas import _out

    plain = None if "_PROMOTE_COMPLETE" in os.environ else plain_run(_out.hoist(sys.argv[1:]))
    if plain is not None:
        _out.QUIET = plain["quiet"]
        root = Path(plain["root"]) if plain["root"] is not None else None
        _out.guarded(
            lambda _args, _fail: run_capsule(
                root, plain["capsule"], plain["json"], plain["dry_run"], plain["engine"]
            ),
            "promote",
        )
    from promote.cli.app import run_main

    run_main()
