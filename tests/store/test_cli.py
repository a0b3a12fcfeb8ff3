"""The `cas` console script, run as a real process on real files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli
from helpers import clean_env, script

from cas.local import LocalStore

BAD_DIGESTS = ["nope", "blake3:xyz", "sha256:" + "0" * 64, "blake3:" + "0" * 63, "../etc/passwd"]


def digest_of(out: bytes) -> str:
    return out.split()[0].decode()


def test_put_prints_digest_size_path(cas: Cli, work: Path) -> None:
    (work / "a.txt").write_bytes(b"hello\n")
    r = cas("put", "a.txt")
    assert r.returncode == 0, r.stderr
    d, size, path = r.stdout.decode().rstrip("\n").split("  ")
    assert (size, path) == ("6", "a.txt")
    assert d.startswith("blake3:")


def test_put_json_and_stdin(cas: Cli, work: Path) -> None:
    (work / "a").write_bytes(b"A")
    r = cas("put", "--json", "a", "-", input=b"from stdin")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [(x["path"], x["size"]) for x in rows] == [("a", 1), ("-", 10)]
    assert set(rows[0]) == {"digest", "size", "path"}


@pytest.mark.skipif(shutil.which("b3sum") is None, reason="b3sum is not installed")
def test_digests_match_b3sum(cas: Cli, work: Path) -> None:
    """Our digests equal what the independent b3sum tool prints."""
    sizes = [0, 1, 1023, 1024, 1025, 65536, (1 << 20) + 7, 3 << 20]
    names = []
    for i, n in enumerate(sizes):
        (work / f"f{i}").write_bytes(os.urandom(n))
        names.append(f"f{i}")
    ours = cas("put", *names)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(["b3sum", *names], cwd=work, capture_output=True, check=True)
    ours_map = {
        line.split("  ")[2]: line.split("  ")[0] for line in ours.stdout.decode().splitlines()
    }
    theirs_map = {
        line.split("  ")[1]: "blake3:" + line.split("  ")[0]
        for line in theirs.stdout.decode().splitlines()
    }
    assert ours_map == theirs_map


def test_cat_and_get_round_trip(cas: Cli, work: Path) -> None:
    data = os.urandom(2 << 20)
    (work / "blob").write_bytes(data)
    d = digest_of(cas("put", "blob").stdout)
    assert cas("cat", d).stdout == data
    r = cas("get", d, "-o", "copy")
    assert r.returncode == 0, r.stderr
    assert (work / "copy").read_bytes() == data
    st = cas("stat", d, "--json")
    assert json.loads(st.stdout) == {"digest": d, "size": len(data)}
    ls = cas("ls").stdout.decode()
    assert ls == f"{d}  {len(data)}\n"


def test_bit_flip_is_caught_by_fsck_cat_and_get(cas: Cli, work: Path) -> None:
    data = os.urandom(3 << 20)
    (work / "blob").write_bytes(data)
    d = digest_of(cas("put", "blob").stdout)
    obj = LocalStore(work / ".cas").object_path(__import__("cas").Digest.parse(d))
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as f:
        f.seek(12345)
        b = f.read(1)
        f.seek(12345)
        f.write(bytes([b[0] ^ 0x10]))
    os.chmod(obj, 0o444)

    r = cas("fsck")
    assert r.returncode == 3
    assert d.encode() in r.stdout
    report = json.loads(cas("fsck", "--json").stdout)
    assert report["ok"] is False
    assert [(p["kind"], p["digest"]) for p in report["problems"]] == [("mismatch", d)]

    r = cas("cat", d)
    assert r.returncode == 3
    assert len(r.stdout) < len(data)
    assert b"corrupt" in r.stderr and len(r.stderr.splitlines()) == 1

    r = cas("get", d, "-o", "copy")
    assert r.returncode == 3
    assert not (work / "copy").exists()
    assert [p.name for p in work.iterdir() if p.name.startswith(".copy")] == []


@pytest.mark.parametrize("bad", BAD_DIGESTS)
@pytest.mark.parametrize("command", [["cat"], ["stat"], ["get", "-o", "out"]], ids=lambda c: c[0])
def test_bad_digest_is_usage_error(cas: Cli, command: list[str], bad: str) -> None:
    r = cas(command[0], bad, *command[1:])
    assert r.returncode == 2
    assert r.stderr.count(b"\n") == 1
    assert b"Traceback" not in r.stderr


def test_absent_digest_is_integrity_error(cas: Cli) -> None:
    r = cas("cat", "blake3:" + "a" * 64)
    assert r.returncode == 3
    assert b"not in the store" in r.stderr


@pytest.mark.parametrize(
    "source, message",
    [
        ("missing.txt", b"no such file"),
        (".", b"is a directory"),
        ("/proc/self/mem", b"cannot read the source"),
    ],
    ids=["missing", "directory", "unreadable"],
)
def test_bad_sources(cas: Cli, source: str, message: bytes) -> None:
    r = cas("put", source)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert r.stderr.count(b"\n") == 1
    assert cas("fsck").returncode == 0


def test_no_store_is_usage_error(tmp_path: Path) -> None:
    from helpers import run_cli

    r = run_cli("cas", "ls", cwd=tmp_path)
    assert r.returncode == 2
    assert b"cas init" in r.stderr


def test_store_flag_and_env(tmp_path: Path) -> None:
    from helpers import run_cli

    (tmp_path / "f").write_bytes(b"x")
    assert run_cli("cas", "init", "elsewhere", cwd=tmp_path).returncode == 0
    r = run_cli("cas", "--store", "elsewhere", "put", "f", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("cas", "ls", cwd=tmp_path, env={"CAS_STORE": str(tmp_path / "elsewhere")})
    assert r.stdout.count(b"\n") == 1


def test_concurrent_puts_of_same_content(work: Path) -> None:
    """Several processes putting overlapping content: all succeed, nothing corrupt."""
    files = []
    for i in range(20):
        (work / f"f{i}").write_bytes(bytes([i % 5]) * (100_000 + i % 5))
        files.append(f"f{i}")
    procs = [
        subprocess.Popen(
            [script("cas"), "put", *files],
            cwd=work,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    store = LocalStore.existing(work / ".cas")
    assert len(list(store.iterate())) == 5
    assert store.fsck() == []


@pytest.mark.parametrize("step", ["put.temp-written", "put.renamed"])
def test_put_killed_at_step_then_fsck(work: Path, step: str) -> None:
    """SIGKILL at each step of a put leaves no half-object; fsck names any stray temp."""
    (work / "f").write_bytes(os.urandom(50_000))
    r = subprocess.run(
        [script("cas"), "put", "f"],
        cwd=work,
        env=clean_env({"CAS_CRASH_AT": step}),
        capture_output=True,
    )
    assert r.returncode == -signal.SIGKILL
    store = LocalStore.existing(work / ".cas")
    problems = store.fsck()
    assert {p.kind for p in problems} <= {"stray-temp"}
    assert len(problems) == (1 if step == "put.temp-written" else 0)
    again = subprocess.run(
        [script("cas"), "put", "f"], cwd=work, env=clean_env(), capture_output=True
    )
    assert again.returncode == 0
    assert len(list(store.iterate())) == 1


def test_put_killed_mid_stream(work: Path) -> None:
    """A put killed while reading a slow pipe leaves only a stray temp, never an object."""
    p = subprocess.Popen(
        [script("cas"), "put", "-"],
        cwd=work,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    p.stdin.write(os.urandom(3 << 20))
    p.stdin.flush()
    time.sleep(0.5)
    p.kill()
    p.communicate()
    store = LocalStore.existing(work / ".cas")
    assert list(store.iterate()) == []
    assert [x.kind for x in store.fsck()] in ([], ["stray-temp"])


# Runs a command and prints its peak RSS in KiB. A small launcher, because a child
# forked straight from the test process counts that (large) process's pages in its
# ru_maxrss until it execs.
MAXRSS = (
    "import resource, subprocess, sys;"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode;"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
    "sys.exit(r)"
)


def test_put_1gib_streams_in_bounded_memory(work: Path) -> None:
    """Putting a 1 GiB file keeps the peak RSS under 100 MiB."""
    big = work / "big"
    with open(big, "wb") as f:
        f.truncate(1 << 30)
    r = subprocess.run(
        [sys.executable, "-c", MAXRSS, script("cas"), "put", "big"],
        cwd=work,
        env=clean_env(),
        capture_output=True,
        check=True,
    )
    peak_mib = int(r.stdout) / 1024
    assert peak_mib < 100, f"peak RSS {peak_mib:.1f} MiB"
