"""The `promote` executable's entry point.

CI calls `promote` once a release, so one call's fixed cost matters, and click's
import is a good part of it (ADR 18). A plain run, `promote [--root DIR] [run] CAPSULE`
with `--dry-run`, `--json`, `--engine E`, `-q` and `-v`, therefore runs without click;
anything else (help, `--version`, `--`, another option or command, a word that is not
a capsule, an option twice) goes to the click application, `promote.cli.app`, which
also gives every error message about the command line itself. Both call `run_capsule`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["COMMANDS", "FAMILIES", "is_capsule", "plain_run", "print_outcome", "run", "run_capsule"]

#: family module -> (its `promote` commands, its `promote ledger` commands, its
#: `promote key` commands); `promote.cli.app` imports a family when it needs it.
FAMILIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "promotion": (("init", "run", "revert", "recover", "capsule"), (), ()),
    "verify": (("verify", "verify-tree"), ("verify", "verify-chain"), ()),
    "history": (("log", "show", "status"), (), ()),
    "proofs": ((), ("checkpoint", "prove", "verify-proof"), ()),
    "receipts": (("receipt", "verify-receipt"), ("witness",), ("vkey",)),
    "policy": (("policy",), (), ()),
    "remote": (("db", "store", "checkout"), ("export", "push"), ()),
    "attest": (("key", "attest"), (), ()),
    "control": (("control",), (), ()),
    "serve": (("serve",), (), ()),
}
#: Every word `promote` takes as a command (a test checks it against the click group).
COMMANDS = frozenset(
    {n for names, _, _ in FAMILIES.values() for n in names} | {"ledger", "help", "completion"}
)
#: What `--engine` may name (`promote.cli.common.ENGINES`).
ENGINES = ("regorus", "opa", "opa-rest")


def is_capsule(word: str) -> bool:
    """Whether a first word that names no command is meant as a capsule: an existing
    path, a digest, or something spelled like a file (`x.json`, `dir/x`)."""
    return os.path.lexists(word) or word.startswith("blake3:") or "." in word or "/" in word


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


def print_outcome(outcome: Any) -> None:
    """A run's result: `promoted: ...` or `planned` on stdout; a refusal as one line
    on stderr, `promote: error|denied|conflict: <reasons>` (see `cas._out.error_line`)."""
    from cas._out import echo, error_line

    o = outcome
    if o.status == "promoted" and o.ledger:
        echo(f"promoted: ledger entry {o.ledger.seq} {o.ledger.entry}")
        if o.reasons:  # committed, but something after the commit point failed
            echo("promote: warning: " + "; ".join(o.reasons), err=True)
    elif o.exit_code == 0:
        echo(o.status)
    else:
        echo(error_line("promote", "; ".join(o.reasons) or o.status, o.exit_code), err=True)
    for c in o.changes:
        before = c.before.digest if c.before else "absent"
        echo(f"  {c.path}: {before} -> {c.after.digest if c.after else 'absent'}")
    if o.entry is not None:
        echo("ledger entry it would write:")
        echo(o.entry.data.decode())


def run_capsule(
    root: Path | None, capsule: str, as_json: bool, dry_run: bool, engine: str | None
) -> int:
    """`promote run CAPSULE`: run the gate, print its outcome; its exit code."""
    from cas._out import emit_json
    from promote.gate import promote
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    ws = Workspace.find(root)
    outcome = promote(ws, open_ledger(ws), capsule, engine=engine, dry_run=dry_run)
    if as_json:
        emit_json(outcome.to_dict())
    else:
        print_outcome(outcome)
    return int(outcome.exit_code)


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
