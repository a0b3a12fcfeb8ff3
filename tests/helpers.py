"""Helpers the tests import: running the real console scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def script(name: str) -> str:
    """The installed console script `name` of this environment."""
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    assert path, f"console script {name} is not installed"
    return path


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAS_", "PROMOTE_"))}
    env.update(extra or {})
    return env


def run_cli(
    name: str,
    *args: str | os.PathLike[str],
    cwd: Path,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[bytes]:
    """Run a real console script as a user would, capturing its output."""
    return subprocess.run(
        [script(name), *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        env=clean_env(env),
        timeout=timeout,
    )
