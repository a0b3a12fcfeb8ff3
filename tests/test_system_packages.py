""".ci/system-packages.sh, which `make test` and .ci/run start with: silent when every
package is there, apt-get as root, one line and exit 2 for anyone else.

PATH decides which commands the script finds (it uses only bash builtins until then),
PG_BINDIR where initdb is, and PYTHON the interpreter whose ensurepip it checks. The
non-root case runs as `nobody` (setpriv) when the tests run as root, as they do in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "system-packages.sh"
BASH = shutil.which("bash") or "/bin/bash"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the install path runs only as root")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A scratch directory `nobody` can read and search (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="syspkg-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d)


def fake_bin(where: Path, commands: dict[str, str]) -> Path:
    """A directory holding only `commands` (name -> shell script body): the whole PATH."""
    where.mkdir(mode=0o755)
    for name, body in commands.items():
        f = where / name
        f.write_text(f"#!/bin/sh\n{body}\n")
        f.chmod(0o755)
    return where


def run_script(
    path_dir: Path, pg_bindir: Path, python: str, as_nobody: bool
) -> subprocess.CompletedProcess[str]:
    """The script on stdin (so `nobody` needs no access to the checkout), from `/`."""
    argv = [BASH, "-s"]
    if as_nobody and ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is not installed")
        argv = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    return subprocess.run(
        argv,
        input=SCRIPT.read_text(),
        cwd="/",
        env={"PATH": str(path_dir), "PG_BINDIR": str(pg_bindir), "PYTHON": python},
        capture_output=True,
        text=True,
        timeout=60,
    )


def present(shared: Path, *missing: str) -> tuple[Path, Path]:
    """PATH with b3sum, git, fiu-run and chromium less `missing`; PG_BINDIR with initdb
    unless "initdb" is in `missing`."""
    names = ("b3sum", "git", "fiu-run", "chromium")
    commands = {c: "exit 0" for c in names if c not in missing}
    path_dir = fake_bin(shared / "bin", commands)
    pg = fake_bin(shared / "pg", {} if "initdb" in missing else {"initdb": "exit 0"})
    return path_dir, pg


@pytest.mark.parametrize(
    ("missing", "python", "packages"),
    [
        (("b3sum",), "/bin/true", "b3sum"),
        (("b3sum", "fiu-run", "initdb"), "/bin/true", "b3sum postgresql-15 fiu-utils"),
        (("git",), "/bin/false", "git python3-venv"),  # no ensurepip: python3-venv
        (("chromium",), "/bin/true", "chromium"),  # the web view's browser test
    ],
)
def test_without_root_one_line_naming_the_packages(
    shared: Path, missing: tuple[str, ...], python: str, packages: str
) -> None:
    path_dir, pg = present(shared, *missing)
    r = run_script(path_dir, pg, python, as_nobody=True)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr == (
        f"make test needs the system packages {packages}: run it as root (it installs"
        f" them), or: sudo apt-get install -y {packages}\n"
    )


def test_without_root_and_everything_present_nothing(shared: Path) -> None:
    path_dir, pg = present(shared)
    r = run_script(path_dir, pg, "/bin/true", as_nobody=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@needs_root
def test_as_root_with_everything_present_no_apt(shared: Path) -> None:
    """No apt-get on PATH: reaching it would be the 'no apt-get' line and exit 2."""
    path_dir, pg = present(shared)
    r = run_script(path_dir, pg, "/bin/true", as_nobody=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@needs_root
def test_as_root_installs_what_is_missing_with_apt_get(shared: Path) -> None:
    log = shared / "apt.log"
    path_dir, pg = present(shared, "b3sum", "fiu-run")
    (path_dir / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {log}\n')
    (path_dir / "apt-get").chmod(0o755)
    r = run_script(path_dir, pg, "/bin/true", as_nobody=False)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "installing the system packages make test needs: b3sum fiu-utils\n"
    assert log.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq b3sum fiu-utils",
    ]


@needs_root
def test_as_root_without_apt_get_one_line(shared: Path) -> None:
    path_dir, pg = present(shared, "git")
    r = run_script(path_dir, pg, "/bin/true", as_nobody=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "git (Debian names) and there is no apt-get" in r.stderr


def test_make_test_checks_the_packages_before_anything_else() -> None:
    """`make -n test`: the script is the first command, before the venv and lint."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-n", "--no-print-directory", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[0].endswith("bash .ci/system-packages.sh"), out


def test_ci_run_uses_the_script() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash .ci/system-packages.sh" in ci
    assert ci.index("system-packages.sh") < ci.index("make install")
    assert "apt-get install" not in ci  # one list of packages, in the script
