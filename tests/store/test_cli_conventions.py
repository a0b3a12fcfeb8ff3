"""The `cas` command line's conventions, on the real console script: multi-input
commands, `hash`, `put -r`, `help`, suggestions, `-v`/`-q` anywhere, completion, one
error format (and JSON errors), signals, progress on a terminal, and a re-put that
writes nothing."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Cli
from helpers import clean_env, script

from cas.digest import hash_bytes


def line(data: bytes, name: str) -> str:
    ref = hash_bytes(data)
    return f"{ref.digest}  {ref.size}  {name}"


def test_put_goes_on_past_bad_inputs_and_reports_each(cas: Cli, work: Path) -> None:
    (work / "a").write_bytes(b"A")
    (work / "b").write_bytes(b"B")
    r = cas("put", "a", "nosuch", "b", "gone")
    assert r.returncode == 2
    assert r.stdout.decode().splitlines() == [line(b"A", "a"), line(b"B", "b")]
    assert r.stderr.decode().splitlines() == [
        "cas: error: nosuch: no such file",
        "cas: error: gone: no such file",
    ]


def test_put_json_reports_failed_inputs_in_order(cas: Cli, work: Path) -> None:
    (work / "a").write_bytes(b"A")
    r = cas("put", "--json", "nosuch", "a")
    assert r.returncode == 2
    assert r.stderr == b""
    rows = json.loads(r.stdout)
    assert rows[0] == {
        "path": "nosuch",
        "error": {"kind": "error", "message": "nosuch: no such file", "exit_code": 2},
    }
    assert rows[1]["path"] == "a" and rows[1]["digest"] == str(hash_bytes(b"A").digest)


def test_put_recursive_prints_paths_relative_to_the_directory(cas: Cli, work: Path) -> None:
    (work / "d" / "sub").mkdir(parents=True)
    (work / "d" / "sub" / "x").write_bytes(b"x")
    (work / "d" / "y").write_bytes(b"y")
    (work / "f").write_bytes(b"f")
    r = cas("put", "-r", "d", "f")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        line(b"y", "y"),
        line(b"x", "sub/x"),
        line(b"f", "f"),
    ]
    without = cas("put", "d")
    assert without.returncode == 2
    assert without.stderr == b"cas: error: d: is a directory, not a file\n"


def test_hash_stores_nothing_and_needs_no_store(tmp_path: Path) -> None:
    from helpers import run_cli

    (tmp_path / "a").write_bytes(b"hello")
    r = run_cli("cas", "hash", "a", "nosuch", "-", cwd=tmp_path, input=b"in")
    assert r.returncode == 2
    assert r.stdout.decode().splitlines() == [line(b"hello", "a"), line(b"in", "-")]
    assert r.stderr == b"cas: error: nosuch: no such file\n"
    assert not (tmp_path / ".cas").exists()


def test_help_and_unknown_commands(cas: Cli) -> None:
    r = cas("help", "put")
    assert r.returncode == 0
    assert r.stdout.startswith(b"Usage: cas put [OPTIONS] FILES...")
    assert cas("help").stdout.startswith(b"Usage: cas [OPTIONS] COMMAND")
    r = cas("pt", "x")
    assert r.returncode == 2
    assert r.stderr == b"cas: error: no such command 'pt' (did you mean 'put'?)\n"
    r = cas("help", "nosuchthing")
    assert r.returncode == 2
    assert r.stderr == b"cas: error: no such command 'nosuchthing'\n"


def test_verbose_and_quiet_anywhere(cas: Cli, work: Path) -> None:
    r = cas("cat", "blake3:" + "a" * 64, "-v")
    assert r.returncode == 3
    assert r.stderr.startswith(b"Traceback")
    assert r.stderr.endswith(b"is not in the store\n")
    (work / "a").write_bytes(b"A")
    assert cas("fsck").stdout != b""
    r = cas("fsck", "-q")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = cas("-q", "put", "a")
    assert r.stdout.decode() == line(b"A", "a") + "\n"


def test_json_errors_are_an_object_on_stdout(cas: Cli) -> None:
    r = cas("stat", "--json", "blake3:" + "a" * 64)
    assert r.returncode == 3
    assert r.stderr == b""
    doc = json.loads(r.stdout)
    assert doc["error"]["exit_code"] == 3 and doc["error"]["kind"] == "error"
    assert "not in the store" in doc["error"]["message"]


def test_missing_paths_are_exit_2_with_the_path(cas: Cli, work: Path) -> None:
    d = cas("put", "-", input=b"x").stdout.split()[0].decode()
    r = cas("get", d, "-o", "no/such/dir/out")
    assert r.returncode == 2
    assert r.stderr.startswith(b"cas: error: no/such/dir")
    assert r.stderr.count(b"\n") == 1
    r = cas("init", "/proc/no-such-store")
    assert r.returncode == 2
    assert b"/proc/no-such-store" in r.stderr and b"Error" not in r.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(cas: Cli, shell: str) -> None:
    r = cas("completion", shell)
    assert r.returncode == 0
    assert b"_CAS_COMPLETE" in r.stdout


def test_completion_completes_commands(work: Path) -> None:
    env = clean_env({"_CAS_COMPLETE": "bash_complete", "COMP_WORDS": "cas ha", "COMP_CWORD": "1"})
    r = subprocess.run([script("cas")], cwd=work, env=env, capture_output=True)
    assert r.returncode == 0
    assert r.stdout.decode().splitlines() == ["plain,hash"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_mid_put_removes_the_temp(work: Path, sig: signal.Signals) -> None:
    """A put interrupted while it streams a pipe: its temp is removed, one line, 128+n."""
    p = subprocess.Popen(
        [script("cas"), "put", "-"],
        cwd=work,
        env=clean_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdin is not None
    tmp = work / ".cas" / "tmp"
    chunk = os.urandom(1 << 16)
    deadline = time.monotonic() + 60
    temps: list[Path] = []
    while not temps or temps[0].stat().st_size == 0:
        assert time.monotonic() < deadline, "the put never wrote its temp"
        p.stdin.write(chunk)  # the pipe stays open: the put waits for more
        p.stdin.flush()
        time.sleep(0.05)
        temps = sorted(tmp.glob("put-*"))
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert err == f"cas: error: interrupted by {sig.name}\n".encode()
    assert out == b""
    assert list(tmp.iterdir()) == []
    assert list((work / ".cas" / "objects").rglob("*/*")) == []


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, bytes]:
    """Run `args` with stdout and stderr on one pseudo-terminal; exit code and output."""
    leader, follower = pty.openpty()
    p = subprocess.Popen(args, cwd=cwd, env=clean_env(), stdout=follower, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 60)
        assert ready, "no output for 60 s"
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the terminal's other end is closed
            break
        if not data:
            break
        out += data
    os.close(leader)
    return p.wait(timeout=60), out


def test_progress_counts_bytes_and_is_cleared_before_results(work: Path) -> None:
    big = work / "big"
    big.write_bytes(os.urandom(40 << 20))
    rc, out = _on_a_terminal([script("cas"), "put", "big"], work)
    assert rc == 0, out
    # bytes read: a large file is hashed first (a stored one is not written again),
    # then copied
    assert b"put  10% 8.0/80.0 MiB" in out and b"put 100% 80.0/80.0 MiB" in out
    assert b"\r\x1b[Kblake3:" in out  # the bar's line is cleared, then the result
    rc, out = _on_a_terminal([script("cas"), "fsck"], work)
    assert rc == 0, out
    assert b"fsck 100% 40.0/40.0 MiB" in out
    assert b"\r\x1b[Kfsck: 1 objects checked, clean" in out
    piped = subprocess.run(
        [script("cas"), "put", "big"], cwd=work, env=clean_env(), capture_output=True
    )
    assert piped.stderr == b""  # off a terminal, no progress


# Runs a command and prints the bytes it wrote (rusage's block outputs, which Linux
# counts as pages are dirtied), from a small launcher so only that command counts.
WRITTEN = (
    "import resource, subprocess, sys;"
    "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode;"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock * 512);"
    "sys.exit(r)"
)


@pytest.mark.skipif(sys.platform != "linux", reason="block-output accounting is Linux's")
@pytest.mark.parametrize("many", [False, True], ids=["put", "put_many"])
def test_re_putting_a_stored_large_file_writes_nothing(work: Path, many: bool) -> None:
    size = 48 << 20
    (work / "big").write_bytes(os.urandom(size))
    (work / "small").write_bytes(b"s")
    args = [script("cas"), "put", "big", *(["small"] if many else [])]

    def written() -> int:
        r = subprocess.run(
            [sys.executable, "-c", WRITTEN, *args],
            cwd=work,
            env=clean_env(),
            capture_output=True,
            check=True,
        )
        return int(r.stdout)

    assert written() >= size  # the first put writes the bytes
    assert written() < size // 16  # the second only hashes them
