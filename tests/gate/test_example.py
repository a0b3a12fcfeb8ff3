"""The shipped example: it runs, and regenerating it gives the committed bytes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import BIN, clean_env

REPO = Path(__file__).resolve().parents[2]


def files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_regenerating_the_example_is_byte_identical(tmp_path: Path) -> None:
    """`make example` in a fresh directory reproduces execution/ exactly."""
    env = clean_env({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    subprocess.run(
        ["bash", str(REPO / "examples/regenerate.sh"), str(tmp_path / "execution")],
        check=True,
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    fresh = files_under(tmp_path / "execution")
    committed = files_under(REPO / "execution")
    assert sorted(fresh) == sorted(committed)
    assert fresh == committed
    assert len(fresh) >= 4


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = clean_env({"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
    r = subprocess.run(
        ["bash", str(REPO / "examples/demo.sh"), str(tmp_path / "ws")],
        capture_output=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert b"verify: clean" in r.stdout
    assert (tmp_path / "ws/release/app.txt").read_bytes() == b"app 1.0.1\n"
