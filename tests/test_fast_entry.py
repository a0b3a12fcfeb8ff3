"""`promote`'s click-free entry point (promote._entry, ADR 18): every plain run gives
the same stdout, stderr and exit code as the click application, without importing
click; anything else is handed to click."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from promote_ws import make_machine

from promote._entry import plain_run
from promote._run import COMMANDS
from promote.cli.app import main

PROBE = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('click:%s' % ('click' in sys.modules)))\n"
    "sys.argv = ['promote', *sys.argv[1:]]\n"
    "from {} import {}\n"
    "{}()\n"
)
WAYS = {"_entry": ("promote._entry", "run"), "cli": ("promote.cli", "run_main")}
CAP = "one.capsule.json"


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with one staged, signed one-target capsule, `one.capsule.json`."""
    root = tmp_path_factory.mktemp("staged") / "ws"
    make_machine(root, "execution/ledger").capsule({"release/a": b"alpha"}, "one")
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["--dry-run", CAP],
        [CAP, "--dry-run"],
        ["run", "--dry-run", CAP],
        ["--json", "--dry-run", CAP],
        ["--dry-run", "--engine", "regorus", CAP],
        ["--dry-run", "--engine=regorus", CAP],
        ["-q", "--root", ".", "--dry-run", CAP],
        ["--root=.", "run", CAP, "-v", "--dry-run"],
        [CAP],
        ["--json", CAP],
        ["--dry-run", "missing.json"],
        ["--json", "--dry-run", "missing.json"],
        ["run", "--dry-run", "log"],
        ["--root", "elsewhere", "--dry-run", CAP],
    ],
)
def test_plain_run_runs_without_click_and_prints_what_click_does(
    staged: Path, tmp_path: Path, args: list[str]
) -> None:
    from cas._out import hoist

    assert plain_run(hoist(args)) is not None
    got = {}
    for way, (module, func) in WAYS.items():
        ws = tmp_path / way  # a promotion changes the workspace: one copy each
        shutil.copytree(staged, ws, symlinks=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CAS_", "PROMOTE_"))}
        r = subprocess.run(
            [sys.executable, "-c", PROBE.format(module, func, func), *args],
            cwd=ws,
            capture_output=True,
            env=env,
        )
        err, _, loaded = r.stderr.decode().rpartition("click:")
        got[way] = (r.returncode, r.stdout.decode(), err)
        assert loaded == ("False" if way == "_entry" else "True")
    assert got["_entry"] == got["cli"]
    if not {"missing.json", "log", "elsewhere"} & set(args):
        assert got["cli"][0] == 0, got["cli"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        [CAP, CAP],
        ["--help"],
        ["-h", CAP],
        ["--version"],
        ["run"],
        ["run", "--help", CAP],
        ["--", CAP],
        ["run", "--", CAP],
        ["run", "-"],
        ["log"],
        ["verify", CAP],
        ["nothing"],
        ["--dry-run=1", CAP],
        ["--json=yes", CAP],
        ["--dry-run", "--dry-run", CAP],
        ["--engine", "rego", CAP],
        ["--engine", "opa", "--engine", "opa", CAP],
        ["--engine"],
        ["--engine", "-q", CAP],
        ["--root"],
        ["--root=", CAP],
        ["--root", "a", "--root", "b", CAP],
        ["run", "--root", "a", CAP],
        [CAP, "--root", "a"],
        ["-qv", CAP],
        ["--verbose=1", CAP],
        ["--dry-run", CAP, "extra"],
    ],
)
def test_anything_but_a_plain_run_goes_to_click(args: list[str]) -> None:
    from cas._out import hoist

    assert plain_run(hoist(args)) is None


def test_the_command_words_are_the_click_groups() -> None:
    """A word that names a command is never taken for a capsule by the fast path."""
    with click.Context(main) as ctx:
        assert set(main.list_commands(ctx)) == COMMANDS
