"""Injected I/O faults (libfiu): write, fsync, rename and open fail with ENOSPC or EIO.

Invariant: when the disk refuses an operation during `cas put` or `promote`, the
command either completes correctly or fails with one clear line on stderr and a
non-zero exit, and leaves no visible partial state: the checker is clean (after
`promote recover` when the fault came after the commit point, which the protocol
allows to leave the view behind).
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import clean_env
from reliability.checker import check, count
from reliability.scenario import HERE, entries, prepare

FIU_RUN = shutil.which("fiu-run")
pytestmark = pytest.mark.skipif(
    FIU_RUN is None and not os.environ.get("CI"),
    reason="libfiu's fiu-run is not installed (apt-get install fiu-utils; .ci/run does)",
)

POINTS = ["posix/io/rw/write", "posix/io/sync/fsync", "posix/io/dir/rename", "posix/io/oc/open"]
ONE_LINE = re.compile(rb"^(cas|promote): (error|warning|denied|conflict): .+\n$")

PUT_STEPS = ["start", "put.temp-written"]
PROMOTE_STEPS = [
    "start",
    "put.temp-written:1",
    "put.renamed:2",
    "promote.decision-stored",
    "promote.state-stored",
    "commit.before",
    "commit.after",
    "commit.head-written",
    "view.before-switch",
    "view.after-switch",
]
CASES = [("put", s, p) for s in PUT_STEPS for p in POINTS] + [
    ("promote", s, p) for s in PROMOTE_STEPS for p in POINTS
]


def _faulted(
    root: Path, point: str, err: int, step: str, *cmd: str
) -> subprocess.CompletedProcess[bytes]:
    assert FIU_RUN is not None
    return subprocess.run(
        [
            FIU_RUN,
            "-x",
            "-f",
            "",
            sys.executable,
            str(HERE / "fiu_launch.py"),
            point,
            str(err),
            step,
            *cmd,
        ],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        timeout=120,
    )


def test_faults_during_put_and_promote(make_ws, zygote) -> None:
    """Every (command, moment, syscall) with ENOSPC or EIO: a clean success or a clean
    one-line failure, and a consistent workspace either way."""
    work = []
    for n, (what, step, point) in enumerate(CASES):
        root = make_ws()
        first = prepare(root, {"release/a": b"a1"}, name="first")
        assert zygote.run("promote", first, cwd=root).returncode == 0
        if what == "put":
            (root / "artifact").write_bytes(os.urandom(200_000) + str(n).encode())
            cmd = ["cas", "put", "artifact"]
        else:
            cap = prepare(root, {"release/a": b"a2", "release/b": f"b {n}".encode()})
            cmd = ["promote", str(cap)]
        err = (errno.ENOSPC, errno.EIO)[n % 2]
        work.append((root, what, step, point, err, cmd))

    def run(item: tuple) -> tuple:
        root, _what, step, point, err, cmd = item
        return item, _faulted(root, point, err, step, *cmd)

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, work))
    failed = 0
    for (root, what, step, point, err, _cmd), r in results:
        where = f"{what} {point} {os.strerror(err)} after {step}"
        count("faults", "cases")
        assert b"Traceback" not in r.stderr, where
        if r.returncode != 0:
            failed += 1
            assert r.returncode > 0, (where, r.returncode, r.stderr)
            assert ONE_LINE.match(r.stderr), (where, r.stderr)
        committed = len(entries(root)) == 2
        if what == "promote" and r.returncode == 0:
            assert committed, where
        if what == "put" and r.returncode == 0:
            digest = r.stdout.split()[0].decode()
            check(root, zygote.run, category="faults", acked=[digest])
            continue
        check(root, zygote.run, category="faults", view="any")
        if committed:
            assert zygote.run("promote", "recover", cwd=root).returncode == 0
        check(root, zygote.run, category="faults")
    assert failed >= len(CASES) // 2  # most faults must really have been injected


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_in_the_installed_scripts(make_ws, zygote, seed: int) -> None:
    """`fiu-run -c 'enable_random name=posix/io/*'` on the real console scripts: whatever
    fails (start-up included), the workspace stays consistent."""
    assert FIU_RUN is not None
    root = make_ws()
    cap = prepare(root, {"release/a": f"random {seed}".encode()})
    prog = "cas" if seed % 3 == 0 else "promote"
    args = ["put", str(cap)] if prog == "cas" else [str(cap)]
    r = subprocess.run(
        [
            FIU_RUN,
            "-x",
            "-f",
            "",
            "-c",
            f"enable_random name=posix/io/*,probability=0.0{1 + seed % 4},failinfo={errno.EIO}",
            str(Path(sys.executable).parent / prog),
            *args,
        ],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        timeout=120,
    )
    count("faults", "cases")
    assert r.returncode != -9
    check(root, zygote.run, category="faults", view="any")
    assert zygote.run("promote", "recover", cwd=root).returncode == 0
    check(root, zygote.run, category="faults", allow=[("stray-temp", "tmp/*")])
