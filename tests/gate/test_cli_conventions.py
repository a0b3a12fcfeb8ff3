"""The `promote` command line's conventions, on the real console script: unknown
commands, `help`, the report only for a real attempt, one error format, `--help`
listing the run options, `capsule new` refusing what `promote` refuses, and `status`
running the cheap checks."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import Flow, clean_env, run_cli, script

from cas.digest import Digest
from cas.local import LocalStore


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    return Flow.init(tmp_path / "ws")


def test_mistyped_command_is_not_a_capsule(flow: Flow) -> None:
    flow.release({"release/a": b"a"})
    report = flow.root / "execution/promote/report.json"
    before = report.read_bytes()
    r = flow.run("promote", "lgo")
    assert r.returncode == 2
    assert r.stderr == b"promote: error: no such command 'lgo' (did you mean 'log'?)\n"
    r = flow.run("promote", "nope.json")
    assert r.returncode == 2
    assert r.stderr == b"promote: error: nope.json: no such capsule file\n"
    assert report.read_bytes() == before  # only a real attempt writes the report


def test_help_command(flow: Flow) -> None:
    r = flow.run("promote", "help", "ledger", "verify")
    assert r.returncode == 0
    assert r.stdout.startswith(b"Usage: promote ledger verify [OPTIONS]")
    r = flow.run("promote", "help")
    assert r.returncode == 0 and b"Options of promote CAPSULE" in r.stdout


def test_help_lists_the_run_options(flow: Flow) -> None:
    out = flow.run("promote", "--help").stdout.decode()
    section = out.split("Options of promote CAPSULE (promote run):")[1].split("Commands:")[0]
    assert "--dry-run" in section and "--json" in section and "--engine" in section


def test_quiet_init_prints_nothing(tmp_path: Path) -> None:
    """`-q` leaves out the notes of `promote init`, before or after the subcommand, --ci too."""
    for i, args in enumerate((["-q", "init"], ["init", "-q", "--ci", "github"])):
        root = tmp_path / f"ws{i}"
        root.mkdir()
        r = run_cli("promote", *args, cwd=root)
        assert (r.returncode, r.stdout, r.stderr) == (0, b"", b""), r.stderr
        assert (root / "control/promote/config.json").is_file()
    assert (tmp_path / "ws1/.github/workflows").is_dir()
    r = run_cli("promote", "init", cwd=tmp_path / "ws0")  # without -q, the note
    assert r.returncode == 0 and r.stdout.startswith(b"initialized promote workspace ")


def test_refusals_have_one_format(flow: Flow) -> None:
    d, s = flow.put(b"app")
    cap = flow.capsule({"release/a": d}, flow.check([(d, s)]), "--expect", "release/a=absent")
    assert flow.run("promote", cap).returncode == 0
    r = flow.run("promote", cap)  # the guard is stale now
    assert r.returncode == 5
    assert r.stderr.startswith(b"promote: conflict: ") and r.stderr.count(b"\n") == 1
    other = flow.capsule({"elsewhere/a": d}, flow.check([(d, s)]), name="other.json")
    r = flow.run("promote", other)
    assert r.returncode == 4
    assert r.stderr.startswith(b"promote: denied: ") and r.stderr.count(b"\n") == 1
    r = flow.run("promote", "--json", "show", "99")
    assert r.returncode == 2 and r.stderr == b""
    assert json.loads(r.stdout)["error"]["exit_code"] == 2


def _without_dac(
    name: str, *args: str | os.PathLike[str], cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    """Run a console script as root without the capabilities that bypass file modes
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so permissions bite as for any user."""
    return subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", script(name), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        env=clean_env(None),
        timeout=300,
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) is missing")
def test_permission_problem_is_exit_2_with_the_path(flow: Flow, tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    secret.chmod(0)
    if os.geteuid() != 0:  # an ordinary user meets the mode without setpriv
        r = run_cli("cas", "put", secret, cwd=flow.root)
    else:
        r = _without_dac("cas", "put", secret, cwd=flow.root)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"cas: error: {secret}: permission denied\n".encode(), r.stderr
    (flow.root / "execution/ledger").chmod(0o500)
    try:
        d, s = flow.put(b"a")
        cap = flow.capsule({"release/a": d}, flow.check([(d, s)]))
        if os.geteuid() != 0:
            r = run_cli("promote", cap, cwd=flow.root)
        else:
            r = _without_dac("promote", cap, cwd=flow.root)
    finally:
        (flow.root / "execution/ledger").chmod(0o755)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(b"promote: error: ") and r.stderr.count(b"\n") == 1, r.stderr
    assert b"permission denied" in r.stderr.lower() and b"execution" in r.stderr, r.stderr
    assert b"Error" not in r.stderr


@pytest.mark.parametrize(
    "targets, message",
    [
        (["/release/a"], b"absolute"),
        (["release/a", "release/a"], b"appears twice"),
        (["release/a", "release/A"], b"collide"),
    ],
    ids=["absolute", "duplicate", "case-collision"],
)
def test_capsule_new_refuses_what_promote_refuses(
    flow: Flow, targets: list[str], message: bytes
) -> None:
    d, s = flow.put(b"x")
    check = flow.check([(d, s)])
    args = [a for t in targets for a in ("--target", f"{t}={d}")]
    r = flow.run("promote", "capsule", "new", *args, "--attestation", check, "-o", "c.json")
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.lower() and r.stderr.count(b"\n") == 1
    assert not (flow.root / "c.json").exists()


def test_output_to_a_pipe_or_device_is_written_not_replaced(flow: Flow, tmp_path: Path) -> None:
    """-o names a FIFO (as /dev/null, a device): written to, never replaced by a file."""
    d, s = flow.put(b"x")
    check = flow.check([(d, s)])
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    r = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={d}", "--attestation", check,
        "-o", fifo,
    )  # fmt: skip
    reader.join(30)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert json.loads(got[0])["targets"][0]["path"] == "release/a"


def test_capsule_new_refuses_a_check_report_not_in_the_store(flow: Flow) -> None:
    d, _ = flow.put(b"x")
    absent = "blake3:" + "b" * 64
    r = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={d}", "--check-report", absent,
        "-o", "c.json",
    )  # fmt: skip
    assert r.returncode == 2
    assert (
        r.stderr
        == f"promote: error: --check-report {absent} is not in the store (cas put it first)\n".encode()
    )
    r = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={d}", "--check-report", d,
        "-o", "c.json",
    )  # fmt: skip
    assert r.returncode == 2 and b"CHECK report" in r.stderr


def test_capsule_new_refuses_an_attestation_not_in_the_store(flow: Flow) -> None:
    d, _ = flow.put(b"x")
    absent = "blake3:" + "b" * 64
    r = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={d}", "--attestation", absent,
        "-o", "c.json",
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == (
        f"promote: error: --attestation {absent} is not in the store"
        " (sign it with 'promote attest')\n".encode()
    )
    assert not (flow.root / "c.json").exists()
    r = flow.run(
        "promote", "capsule", "new", "--target", f"release/a={d}", "--attestation", d,
        "-o", "c.json",
    )  # fmt: skip
    assert r.returncode == 2 and b"DSSE envelope" in r.stderr
    r = flow.run("promote", "capsule", "new", "--target", f"release/a={d}", "-o", "c.json")
    assert r.returncode == 2
    assert b"--attestation DIGEST (repeatable) or --check-report" in r.stderr


def test_status_runs_the_cheap_checks(flow: Flow) -> None:
    assert flow.release({"release/a": b"alpha"}).returncode == 0
    ok = flow.ok("promote", "status").stdout.decode()
    assert ok.splitlines()[-1].startswith("clean")
    digest = json.loads((flow.root / "capsule.json").read_bytes())["targets"][0]["digest"]
    obj = LocalStore.existing(flow.root / ".cas").object_path(Digest.parse(digest))
    obj.chmod(0o644)
    obj.write_bytes(b"alphA")
    r = flow.run("promote", "status")
    lines = r.stdout.decode().splitlines()
    assert lines[-1] == "1 problem: run `promote verify`"
    assert any(x.startswith("problem   mismatch: release/a") for x in lines)
    doc = json.loads(flow.run("promote", "status", "--json").stdout)
    assert doc["clean"] is False and len(doc["problems"]) == 1
    obj.write_bytes(b"alpha")
    entry = flow.root / "execution/ledger/entries/000000000001.json"
    entry.chmod(0o644)
    doc = json.loads(entry.read_bytes())
    doc["capsule"]["size"] += 1  # an edited entry: its hash no longer links
    entry.write_bytes(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())
    lines = flow.run("promote", "status").stdout.decode().splitlines()
    assert lines[-1].endswith(" run `promote verify`"), lines
    assert not any(x.startswith("clean") for x in lines)
