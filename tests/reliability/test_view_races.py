"""Copy mode against a directory swapped for a symlink while it is being written.

Invariant: every write, rename and removal of a copy-mode view goes through
directory descriptors opened with O_NOFOLLOW from the view root, so a loop that
exchanges `release/sub` with a symlink out of the workspace (renameat2 with
RENAME_EXCHANGE, atomic) during promotions and recoveries changes nothing outside the
workspace: each run either writes inside the real directory or refuses (exit 2), and
once the swapping stops, `promote recover` leaves the checker clean.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers import tree_snapshot
from reliability.checker import check, count
from reliability.scenario import Zygote, prepare

from cas.digest import ObjectRef
from promote.capsules import new_capsule
from promote.ledger.files import FileLedger
from promote.workspace import Workspace

SWAPPER = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
renameat2 = libc.renameat2
renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
AT_FDCWD, RENAME_EXCHANGE = -100, 2
a, b, stop = (s.encode() for s in sys.argv[1:4])
swaps = 0
print("ready", flush=True)
while not os.path.exists(stop):
    if renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) == 0:
        swaps += 1
    else:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
if swaps % 2:  # leave the directory where it belongs
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE)
print(swaps, flush=True)
"""


def _delete_capsule(root: Path, path: str, name: str) -> Path:
    ws = Workspace.load(root)
    check_ref: ObjectRef = ws.store.put_bytes(
        b'{"schema":"check-report/v1","status":"pass","subjects":[],'
        b'"checks":[{"name":"unit","status":"pass"}]}'
    )
    data = new_capsule(
        ws, FileLedger(ws.ledger_dir, ws.store), [], str(check_ref.digest), deletes=[path]
    )
    out = root / f"{name}.json"
    out.write_bytes(data)
    return out


def test_copy_view_with_directories_swapped_for_links(make_ws, cli: Zygote, tmp_path: Path) -> None:
    root = make_ws("copy")
    first = prepare(root, {"release/sub/x": b"x0", "release/sub/y": b"y0"}, name="first")
    assert cli("promote", first, cwd=root).returncode == 0
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "x").write_bytes(b"victim x")
    (outside / "sub/y").write_bytes(b"victim y")
    os.chmod(outside / "sub", 0o751)
    before = tree_snapshot(tmp_path)
    link = root / "release/.swap"
    link.symlink_to(outside)
    stop = tmp_path / "stop"
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(root / "release/sub"), str(link), str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None
    assert swapper.stdout.readline().strip() == "ready"
    codes: set[int] = set()
    try:
        for n in range(30):
            files = {"release/sub/x": f"x{n}".encode()}
            if n % 3 == 1:
                files["release/sub/y"] = f"y{n}".encode()
            cap = prepare(root, files, name=f"c{n}", guards=False)
            codes.add(cli("promote", cap, cwd=root).returncode)
            if n % 3 == 2:
                gone = _delete_capsule(root, "release/sub/y", f"d{n}")
                codes.add(cli("promote", gone, cwd=root).returncode)
            codes.add(cli("promote", "recover", cwd=root).returncode)
            count("concurrency", "cases")
    finally:
        stop.touch()
        out, _ = swapper.communicate(timeout=60)
    assert swapper.returncode == 0, out
    swaps = int(out.split()[-1])
    assert swaps > 0
    assert codes <= {0, 2, 4, 5}, codes  # done, or refused: never an internal error
    stop.unlink()
    assert tree_snapshot(tmp_path) == before  # nothing outside the workspace changed
    assert (root / "release/sub").is_dir() and not (root / "release/sub").is_symlink()
    link.unlink()
    r = cli("promote", "recover", cwd=root)
    assert r.returncode == 0, r.stderr
    check(root, cli, category="concurrency")
