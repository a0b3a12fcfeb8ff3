"""`cas gc` and `cas fsck` on a store that stands alone, and the layering that allows it.

Invariants: on a standalone store (`cas init DIR`, no workspace) gc keeps pinned and
young objects, removes unpinned old ones and the temps of dead writers, and with
`--dry-run` removes nothing; a workspace's store is never collected without the
workspace's roots (the hook missing: gc refuses, fsck says what it did not check);
and nothing under `cas/` imports `promote`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import Flow, clean_env, run_cli, script

import cas

HOUR = 3600
CAS_DIR = Path(cas.__file__).parent


def _put(store: Path, data: bytes, cwd: Path) -> str:
    r = run_cli("cas", "--store", store, "put", "-", cwd=cwd, input=data)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode().split("  ")[0]


def _object(store: Path, digest: str) -> Path:
    hexd = digest.removeprefix("blake3:")
    return store / "objects/blake3" / hexd[:2] / hexd[2:]


def _age(store: Path, digests: list[str], seconds: float) -> None:
    then = time.time() - seconds
    for d in digests:
        os.utime(_object(store, d), (then, then))


def _tree(store: Path) -> dict[str, tuple[int, float]]:
    """Every path under the store with its size and mtime."""
    return {
        p.relative_to(store).as_posix(): (p.lstat().st_size, p.lstat().st_mtime)
        for p in sorted(store.rglob("*"))
    }


def _killed_mid_put(store: Path, cwd: Path) -> Path:
    """Start `cas put -` on a pipe that stays open, SIGKILL it once its temp holds
    bytes, and return the temp it left behind (SIGTERM would remove it)."""
    p = subprocess.Popen(
        [script("cas"), "--store", str(store), "put", "-"],
        cwd=cwd,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    chunk = os.urandom(1 << 16)
    deadline = time.monotonic() + 60
    temps: list[Path] = []
    while not temps or temps[0].stat().st_size == 0:
        assert time.monotonic() < deadline, "the put never wrote its temp"
        p.stdin.write(chunk)  # the pipe stays open: the put waits for more
        p.stdin.flush()
        time.sleep(0.05)
        temps = sorted((store / "tmp").glob("put-*"))
    p.send_signal(signal.SIGKILL)
    _, err = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, err
    assert len(temps) == 1
    return temps[0]


def test_killed_put_leaves_a_temp_that_standalone_gc_removes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("cas", "init", store, cwd=tmp_path).returncode == 0
    by_file = _put(store, b"pinned by the pins file", tmp_path)
    by_flag = _put(store, b"pinned by --pin", tmp_path)
    unpinned = [_put(store, f"unpinned {n}".encode(), tmp_path) for n in range(3)]
    (store / "pins").write_text(f"# keep\n{by_file}\n")
    _age(store, [by_file, by_flag, *unpinned], 2 * HOUR)

    temp = _killed_mid_put(store, tmp_path)
    assert temp.exists()  # SIGKILL runs no cleanup: the temp stays, nobody holds it
    rel = f"tmp/{temp.name}"

    fsck = run_cli("cas", "--store", store, "fsck", cwd=tmp_path)
    assert fsck.returncode == 3, fsck.stderr
    assert fsck.stdout.decode().splitlines() == [
        f"stray-temp: {rel}: temp file of an interrupted put"
    ]
    assert fsck.stderr.decode() == "fsck: 5 objects checked, 1 problem\n"

    r = run_cli(
        "cas", "--store", store, "gc", "--grace", "0", "--pin", by_flag, "--json", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert sorted(x["digest"] for x in report["removed"]) == sorted(unpinned)
    assert report["temps"] == [rel]
    assert report["generations"] == []
    assert report["kept"] == 2
    assert not temp.exists()
    assert not any(_object(store, d).exists() for d in unpinned)
    assert _object(store, by_file).exists() and _object(store, by_flag).exists()

    fsck = run_cli("cas", "--store", store, "fsck", cwd=tmp_path)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert fsck.stdout.decode() == "fsck: 2 objects checked, clean\n"
    assert fsck.stderr == b""


def test_standalone_gc_dry_run_removes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert run_cli("cas", "init", store, cwd=tmp_path).returncode == 0
    old = _put(store, b"old and unpinned", tmp_path)
    _age(store, [old], 2 * HOUR)
    young = _put(store, b"young", tmp_path)
    (store / "tmp/put-dead").write_bytes(b"half an object")
    before = _tree(store)

    r = run_cli("cas", "--store", store, "gc", "--dry-run", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["dry_run"] is True
    assert [x["digest"] for x in plan["removed"]] == [old]  # young is within the grace
    assert plan["temps"] == ["tmp/put-dead"]
    assert _tree(store) == before

    text = run_cli("cas", "--store", store, "gc", "--dry-run", "--grace", "0", cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.decode().splitlines()
    assert sorted(lines[:2]) == sorted(
        f"would remove {d}  {len(b)}" for d, b in ((old, b"old and unpinned"), (young, b"young"))
    )
    assert lines[2:] == [
        "would remove tmp/put-dead",
        "gc: kept 0 objects, would remove 2 objects (21 bytes), 1 temp files, 0 view generations",
    ]
    assert _tree(store) == before


def test_gc_from_outside_keeps_the_roots_of_the_workspace_owning_the_store(
    tmp_path: Path,
) -> None:
    """`cas --store WS/.cas gc`, run outside WS, is not a standalone gc: WS's ledger
    still names the roots."""
    ws = Flow.init(tmp_path / "ws")
    assert ws.release({"release/a": b"released"}).returncode == 0
    garbage = ws.put(b"garbage")[0]
    store = ws.root / ".cas"
    _age(store, [p.parent.name + p.name for p in (store / "objects/blake3").glob("*/*")], HOUR)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    r = run_cli("cas", "--store", store, "gc", "--grace", "0", "--json", cwd=outside)
    assert r.returncode == 0, r.stderr
    assert [x["digest"] for x in json.loads(r.stdout)["removed"]] == [garbage]
    ws.ok("promote", "verify")
    ws.ok("cas", "fsck")


# A real `cas` process in an environment where no package provides the hooks.
WITHOUT_HOOKS = (
    "import importlib.metadata as m, sys;"
    "m.entry_points = lambda **kw: ();"
    "from cas.cli import run;"
    "sys.argv[0] = 'cas';"
    "run()"
)


def _cas_without_hooks(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_HOOKS, *args],
        cwd=cwd,
        capture_output=True,
        env=clean_env(),
        timeout=120,
    )


def test_workspace_without_hooks_gc_refuses_and_fsck_says_so(tmp_path: Path) -> None:
    ws = Flow.init(tmp_path / "ws")
    digest = ws.put(b"would be garbage")[0]
    store = ws.root / ".cas"
    _age(store, [digest], 2 * HOUR)
    before = _tree(store)

    r = _cas_without_hooks("gc", "--grace", "0", cwd=ws.root)
    assert r.returncode == 2
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("cas: error: ")
    assert "cas.workspace_hooks" in err and "guess" in err
    assert _tree(store) == before

    f = _cas_without_hooks("fsck", cwd=ws.root)
    assert f.returncode == 0, f.stderr
    assert f.stdout.decode() == "fsck: 1 objects checked, clean\n"
    assert f.stderr.decode() == (
        f"fsck: the ledger and view of {ws.root.resolve()} were not checked:"
        " no installed package provides cas.workspace_hooks (install promote)\n"
    )
    j = _cas_without_hooks("fsck", "--json", cwd=ws.root)
    assert j.returncode == 0, j.stderr
    assert json.loads(j.stdout)["notes"] == [f.stderr.decode().rstrip("\n")]

    # the same workspace with the hooks installed: checked, and its gc runs
    assert b"notes" not in ws.ok("cas", "fsck", "--json").stdout
    assert ws.ok("cas", "gc", "--grace", "0").returncode == 0
    assert not _object(store, digest).exists()
