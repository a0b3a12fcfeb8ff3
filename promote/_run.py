"""What the click-free entry point (`promote._entry`, ADR 18) and the click
application (`promote.cli`) share: the command families, the capsule test, and the
body of `promote run CAPSULE`. Neither click nor the gate is imported here at module
level, so `promote._entry` stays cheap and the two never import each other."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["COMMANDS", "ENGINES", "FAMILIES", "is_capsule", "print_outcome", "run_capsule"]

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
