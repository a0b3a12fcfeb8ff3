"""What a plain `promote CAPSULE` imports (ADR 16): its own family of commands, not
the others; not urllib.request (the REST engine's) nor importlib.metadata (the
engine's version is read from its METADATA file, as importlib.metadata reads it)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from helpers import Flow, clean_env

from promote.cli.app import FAMILIES
from promote.policy.engines import dist_version


def test_families_name_the_commands_their_modules_add() -> None:
    for family, (commands, ledger, key) in FAMILIES.items():
        module = importlib.import_module(f"promote.cli.{family}")
        assert tuple(c.name for c in module.COMMANDS) == commands, family
        assert tuple(c.name for c in module.LEDGER_COMMANDS) == ledger, family
        assert tuple(c.name for c in getattr(module, "KEY_COMMANDS", ())) == key, family


def test_every_command_is_listed_and_found() -> None:
    from promote.cli.app import ledger, main

    names = {n for commands, _, _ in FAMILIES.values() for n in commands}
    assert names | {"ledger", "help", "completion"} == set(main.commands)
    assert {n for _, cmds, _ in FAMILIES.values() for n in cmds} == set(ledger.commands)
    key = main.commands["key"]
    assert "vkey" in key.commands  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["gordon-to-regorus", "click", "cas-promote", "jsonschema"])
def test_dist_version_is_importlib_metadata_s(name: str) -> None:
    assert dist_version(name) == version(name)


def test_dist_version_of_nothing_installed_is_importlib_metadata_s_error() -> None:
    from importlib.metadata import PackageNotFoundError

    with pytest.raises(PackageNotFoundError):
        dist_version("no-such-distribution-here")


#: Run `promote --dry-run` in a fresh interpreter and list what it imported.
PROBE = """
import json, sys
sys.argv = ["promote", "--root", sys.argv[1], "--dry-run", sys.argv[2]]
from promote.cli import run_main
try:
    run_main()
except SystemExit as e:
    code = e.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def test_a_dry_run_imports_only_what_it_uses(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    ref = flow.put(b"app 1.0.0\n")
    capsule = flow.capsule({"release/app.txt": ref[0]}, flow.check([ref]))
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, str(flow.root), str(capsule)],
        capture_output=True,
        env=clean_env(),
        cwd=flow.root,
        check=True,
    )
    out = json.loads(probe.stdout.decode().splitlines()[-1])
    assert out["code"] == 0, probe.stderr.decode()
    modules = set(out["modules"])
    assert "promote.cli.promotion" in modules
    others = {f"promote.cli.{f}" for f in FAMILIES} - {"promote.cli.promotion"}
    assert not others & modules
    for heavy in ("urllib.request", "importlib.metadata", "promote.web", "promote.cli.attest"):
        assert heavy not in modules
