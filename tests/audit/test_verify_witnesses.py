"""`promote verify --checkpoint FILE --witnesses N --witness-key ...` (issue 16, item 5):
a C2SP checkpoint kept elsewhere must carry N cosignatures by the given witness keys,
and the ledger must extend it. Run on the real CLI, the witnesses in directories of
their own as on a second machine."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import Flow, run_cli

from promote.attest.keys import load_private_key, new_key, write_key_pair
from promote.ledger.checkpoint import TlogCheckpoint, sign_checkpoint
from promote.receipt import note_signer

ORIGIN = "cas-promote.invalid/ledger/blake3"


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    flow = Flow.init(tmp_path_factory.mktemp("witnessed") / "ws")
    for n in (1, 2):
        assert flow.release({"release/app.txt": f"v{n}\n".encode()}).returncode == 0
    return flow


def _witness(tmp: Path, name: str) -> tuple[Path, str]:
    """A witness directory with its key; its vkey (type 0x04)."""
    d = tmp / name.replace("/", "_")
    d.mkdir()
    write_key_pair(d / "w.pem", new_key())
    r = run_cli("promote", "key", "vkey", "w.pem", "--name", name, "--cosigner", cwd=d)
    assert r.returncode == 0, r.stderr.decode()
    return d, r.stdout.decode().strip()


def _log_vkey(flow: Flow) -> str:
    r = flow.ok("promote", "key", "vkey", ".promote/keys/runner.pub", "--name", ORIGIN)
    return r.stdout.decode().strip()


def _cosign(flow: Flow, d: Path, name: str, src: Path, out: Path) -> None:
    r = run_cli(
        "promote",
        "ledger",
        "witness",
        str(src),
        "--key",
        "w.pem",
        "--name",
        name,
        "--state",
        "state",
        "--log-key",
        _log_vkey(flow),
        "-o",
        str(out),
        cwd=d,
    )
    assert r.returncode == 0, r.stderr.decode()


def _verify(flow: Flow, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return flow.run("promote", "verify", *args)


@pytest.fixture
def witnessed(flow: Flow, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """The head's checkpoint cosigned by one witness, and by two; the witnesses' vkeys
    as files."""
    cp = tmp_path / "cp"
    r = flow.ok("promote", "ledger", "checkpoint", "-o", str(cp))
    assert cp.read_bytes().startswith(ORIGIN.encode() + b"\n2\n"), r.stdout
    keys = []
    src = cp
    outs = []
    for n in (1, 2):
        name = f"witness.example/w{n}"
        d, vkey = _witness(tmp_path, name)
        (tmp_path / f"w{n}.vkey").write_text(vkey + "\n")
        keys.append(str(tmp_path / f"w{n}.vkey"))
        out = tmp_path / f"cosigned{n}"
        _cosign(flow, d, name, src, out)
        src = out
        outs.append(out)
    return outs[0], outs[1], keys


def _witness_args(keys: list[str]) -> list[str]:
    return [a for k in keys for a in ("--witness-key", k)]


def test_two_cosignatures_pass(flow: Flow, witnessed: tuple[Path, Path, list[str]]) -> None:
    _, both, keys = witnessed
    for cmd in (("verify",), ("ledger", "verify")):
        r = flow.run(
            "promote", *cmd, "--checkpoint", str(both), "--witnesses", "2", *_witness_args(keys)
        )
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()


def test_a_missing_cosignature_is_exit_3_naming_it(
    flow: Flow, witnessed: tuple[Path, Path, list[str]]
) -> None:
    one, _, keys = witnessed
    for cmd in (("verify",), ("ledger", "verify")):
        r = flow.run(
            "promote", *cmd, "--checkpoint", str(one), "--witnesses", "2", *_witness_args(keys)
        )
        err = r.stderr.decode()
        assert r.returncode == 3, (r.returncode, err)
        assert err.count("\n") == 1, err
        assert "1 of 2 required cosignatures; none by witness.example/w2+" in err, err
    # one of one holds
    r = _verify(flow, "--checkpoint", str(one), "--witnesses", "1", *_witness_args(keys))
    assert r.returncode == 0, r.stderr.decode()


def test_a_forked_checkpoint_is_exit_3(flow: Flow, tmp_path: Path) -> None:
    """Signed by the runner key and cosigned by both witnesses, but of another tree
    at the head's size: the ledger does not extend it."""
    runner = load_private_key(flow.root / ".promote/keys/runner.pem")
    forked = tmp_path / "forked"
    forked.write_bytes(
        sign_checkpoint(TlogCheckpoint(ORIGIN, 2, b"\x01" * 32), note_signer(runner, ORIGIN))
    )
    keys, src = [], forked
    for n in (1, 2):
        name = f"witness.example/w{n}"
        d, vkey = _witness(tmp_path, name)
        (tmp_path / f"w{n}.vkey").write_text(vkey + "\n")
        keys.append(str(tmp_path / f"w{n}.vkey"))
        out = tmp_path / f"forked{n}"
        _cosign(flow, d, name, src, out)
        src = out
    r = _verify(flow, "--checkpoint", str(src), "--witnesses", "2", *_witness_args(keys))
    out = r.stdout.decode()
    assert r.returncode == 3, (r.returncode, out, r.stderr.decode())
    assert out.count("\n") == 1 and out.startswith(f"rollback: {src}: "), out
    assert "the chain was rewritten" in out


def test_another_log_key_or_none_of_the_log_is_exit_3(
    flow: Flow, witnessed: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    _, both, _ = witnessed
    other = tmp_path / "other.pem"
    write_key_pair(other, new_key())
    vkey = flow.ok("promote", "key", "vkey", str(other), "--name", ORIGIN).stdout.decode().strip()
    r = _verify(flow, "--checkpoint", str(both), "--log-key", vkey)
    assert r.returncode == 3 and r.stderr.decode().count("\n") == 1, r.stderr.decode()
    assert "not signed by the log" in r.stderr.decode()


def test_malformed_and_usage_are_exit_2(
    flow: Flow, witnessed: tuple[Path, Path, list[str]], tmp_path: Path
) -> None:
    _, both, keys = witnessed
    bad = tmp_path / "bad"
    bad.write_bytes(b"not a checkpoint\n")
    r = _verify(flow, "--checkpoint", str(bad))
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1, r.stderr.decode()
    # more required than keys given; witnesses without a checkpoint
    r = _verify(flow, "--checkpoint", str(both), "--witnesses", "3", *_witness_args(keys))
    assert r.returncode == 2 and b"only 2 --witness-key" in r.stderr
    r = _verify(flow, "--witnesses", "1", *_witness_args(keys))
    assert r.returncode == 2 and b"go with --checkpoint" in r.stderr
    # the JSON form carries no cosignatures
    js = tmp_path / "cp.json"
    flow.ok("promote", "ledger", "checkpoint", "--json", "-o", str(js))
    assert json.loads(js.read_bytes())["size"] == 2
    assert _verify(flow, "--checkpoint", str(js)).returncode == 0
    r = _verify(flow, "--checkpoint", str(js), "--witnesses", "1", *_witness_args(keys))
    assert r.returncode == 2 and b"no cosignatures" in r.stderr
