"""An attacker with write access to parts of a workspace, through the real CLI.

Invariant: the view cannot lie (every link of it is resolved, by device and inode,
to this workspace's store; anything else is exit 3 naming the path); nothing the
promoter creates has a predictable name and its clean-up follows no link; a path no
file system can hold is refused (exit 2) and an old state holding one does not wedge
the view; the config cannot send the store, ledger, policy or view out of the
workspace, nor let promotions write the workspace's own machinery.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers import tree_snapshot
from reliability.checker import check, count
from reliability.scenario import Zygote, entries, prepare

CONFIG = "control/promote/config.json"


def _promoted(root: Path, cli: Zygote) -> str:
    """One promotion of release/a; returns the state hex the view shows."""
    cap = prepare(root, {"release/a": b"true bytes"}, name="p1")
    assert cli("promote", cap, cwd=root).returncode == 0
    return os.readlink(root / ".promote/current").split("/")[-1]


def _verify_names(root: Path, cli: Zygote, kind: str, location: str) -> None:
    """`promote verify` and `cas fsck` both exit 3 and name `location`."""
    for prog, argv in (("promote", ["verify", "--json"]), ("cas", ["fsck", "--json"])):
        r = cli(prog, *argv, cwd=root)
        assert r.returncode == 3, (prog, r.stdout, r.stderr)
        found = {(p["kind"], p["location"]) for p in json.loads(r.stdout)["problems"]}
        assert (kind, location) in found, (prog, found)


# -- 1. the view cannot lie ---------------------------------------------------------


def _fake_object(fake_store: Path, root: Path, rel_object: str) -> None:
    """A copy of the workspace's store, with other bytes under a promoted object's name."""
    shutil.copytree(root / ".cas", fake_store, symlinks=True)
    obj = fake_store / rel_object
    os.chmod(obj.parent, 0o755)
    obj.unlink()
    obj.write_bytes(b"EVIL bytes")


def _object_of(root: Path, gen: str) -> str:
    real = os.path.realpath(root / ".promote/generations" / gen / "release/a")
    return Path(real).relative_to(root / ".cas").as_posix()


def test_current_pointing_elsewhere(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """`.promote/current -> /elsewhere/<state hex>`: the name is right, the place not."""
    root = make_ws()
    gen = _promoted(root, cli)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / gen / "release").mkdir(parents=True)
    (elsewhere / "evil").write_bytes(b"EVIL bytes")
    (elsewhere / gen / "release/a").symlink_to(elsewhere / "evil")
    tmp = root / ".promote/current.planted"
    tmp.symlink_to(elsewhere / gen)
    os.replace(tmp, root / ".promote/current")
    assert (root / "release/a").read_bytes() == b"EVIL bytes"  # the lie a reader sees
    count("tamper", "cases")
    _verify_names(root, cli, "view-link", ".promote/current")
    assert cli("promote", "recover", cwd=root).returncode == 0
    assert (root / "release/a").read_bytes() == b"true bytes"
    check(root, cli, category="tamper")


def test_generations_pointing_at_a_copy_beside_a_fake_store(
    make_ws, cli: Zygote, tmp_path: Path
) -> None:
    """`.promote/generations` -> a copy whose relative links reach a fake `.cas`."""
    root = make_ws()
    gen = _promoted(root, cli)
    fake = tmp_path / "fake"
    (fake / "y").mkdir(parents=True)
    shutil.copytree(root / ".promote/generations", fake / "y/generations", symlinks=True)
    _fake_object(fake / ".cas", root, _object_of(root, gen))
    os.rename(root / ".promote/generations", root / "real-generations")
    (root / ".promote/generations").symlink_to(fake / "y/generations")
    assert (root / "release/a").read_bytes() == b"EVIL bytes"
    count("tamper", "cases")
    _verify_names(root, cli, "view-link", ".promote/generations")
    shutil.rmtree(root / "real-generations", ignore_errors=True)
    before = tree_snapshot(fake)
    assert cli("promote", "recover", cwd=root).returncode == 0
    assert (root / "release/a").read_bytes() == b"true bytes"
    aside = root / ".promote/quarantine/generations.0"
    assert aside.is_symlink()  # the planted link is evidence, moved aside, not followed
    assert tree_snapshot(fake) == before
    check(root, cli, category="tamper")


def test_entry_reaching_an_identical_store_elsewhere(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """A generation's entry re-pointed at the same bytes in another store: the text
    and the bytes look right, but the object is not this workspace's."""
    root = make_ws()
    gen = _promoted(root, cli)
    other = tmp_path / "other-store"
    shutil.copytree(root / ".cas", other, symlinks=True)
    link = root / ".promote/generations" / gen / "release/a"
    os.chmod(link.parent, 0o755)
    link.unlink()
    link.symlink_to(other / _object_of_text(root, gen))
    assert (root / "release/a").read_bytes() == b"true bytes"
    count("tamper", "cases")
    _verify_names(root, cli, "view-pointer", "release/a")


def _object_of_text(root: Path, gen: str) -> str:
    import blake3

    from cas.digest import ALGORITHM

    h = blake3.blake3(b"true bytes").hexdigest()
    return f"objects/{ALGORITHM}/{h[:2]}/{h[2:]}"


def test_promote_dir_itself_a_link(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """`.promote` a link out of the workspace: promotions refuse to write through it."""
    root = make_ws()
    _promoted(root, cli)
    outside = tmp_path / "outside-meta"
    shutil.copytree(root / ".promote", outside, symlinks=True)
    shutil.rmtree(root / ".promote")
    (root / ".promote").symlink_to(outside)
    before = tree_snapshot(outside)
    cap = prepare(root, {"release/b": b"b"}, name="p2")
    r = cli("promote", cap, cwd=root)
    count("tamper", "cases")
    assert r.returncode == 2 and b".promote" in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1
    assert tree_snapshot(outside) == before
    _verify_names(root, cli, "view-link", ".promote")


# -- 2. no predictable names, no following links ------------------------------------


def test_planted_temp_links_are_never_followed(make_ws, cli: Zygote, tmp_path: Path) -> None:
    """Links planted under every name the old promoter used (`.tmp-<hex>-<pid>`,
    `.current-<pid>`) at a victim tree: the promotion succeeds, `cas gc` removes the
    links, and the victim's modes and bytes are untouched."""
    root = make_ws()
    victim = tmp_path / "victim"
    (victim / "sub").mkdir(parents=True)
    (victim / "sub/data").write_bytes(b"precious")
    os.chmod(victim / "sub", 0o751)
    before = tree_snapshot(victim)
    cap = prepare(root, {"release/a": b"1"}, name="p1")
    dry = cli("promote", "run", cap, "--dry-run", "--json", cwd=root)
    assert dry.returncode == 0, dry.stdout
    state = json.loads(dry.stdout)["plan"]["entry"]["state_after"]["digest"].split(":")[1]
    gens = root / ".promote/generations"
    for pid in range(os.getpid() - 50, os.getpid() + 400):
        (gens / f".tmp-{state}-{pid}").symlink_to(victim)
        (root / ".promote" / f".current-{pid}").symlink_to(victim)
    r = cli("promote", cap, cwd=root)
    count("tamper", "cases")
    assert r.returncode == 0, r.stderr
    assert (root / "release/a").read_bytes() == b"1"
    assert tree_snapshot(victim) == before
    gc = cli("cas", "gc", "--grace", "0", cwd=root)
    assert gc.returncode == 0, gc.stderr
    assert tree_snapshot(victim) == before
    assert [p.name for p in gens.iterdir()] == [state]
    check(root, cli, category="tamper")


LOCKS = {"ledger": "execution/ledger/.lock", "view": ".promote/view.lock"}


@pytest.mark.parametrize("target", ["existing", "dangling"])
@pytest.mark.parametrize("lock", list(LOCKS))
def test_planted_lock_links_are_refused(
    make_ws, cli: Zygote, tmp_path: Path, lock: str, target: str
) -> None:
    """A symlink planted at a lock path (opened with O_CREAT) at a victim file, or at
    a victim path that does not exist yet: the promotion is refused, exit 3 with one
    line naming the lock, nothing is committed, the victim is neither changed nor
    created; once the link is gone the same capsule promotes."""
    root = make_ws()
    _promoted(root, cli)
    victim = tmp_path / "victim"
    if target == "existing":
        victim.write_bytes(b"precious")
        os.chmod(victim, 0o600)
    before = tree_snapshot(tmp_path)
    path = root / LOCKS[lock]
    path.unlink(missing_ok=True)
    path.symlink_to(victim)
    cap = prepare(root, {"release/a": b"2"}, name="p2")
    r = cli("promote", cap, cwd=root)
    count("tamper", "cases")
    refused = f"the {lock} lock {path} is a symbolic link: refusing to follow it (remove it)"
    assert r.returncode == 3, r.stderr
    if lock == "ledger":
        assert r.stderr.decode() == f"promote: error: {refused}\n"
        assert len(entries(root)) == 1
    else:  # the ledger's lock came first: the entry is in, and the view is behind
        assert r.stderr.decode() == (
            f"promote: warning: committed, but the view is behind: {refused}"
            " (run 'promote recover')\n"
        )
        assert len(entries(root)) == 2
        rec = cli("promote", "recover", cwd=root)
        assert (rec.returncode, rec.stderr.decode()) == (3, f"promote: error: {refused}\n")
    assert tree_snapshot(tmp_path) == before
    path.unlink()
    assert cli("promote", "recover", cwd=root).returncode == 0
    again = cli("promote", cap, cwd=root)
    assert again.returncode == (5 if lock == "view" else 0), again.stderr
    assert (root / "release/a").read_bytes() == b"2"
    check(root, cli, category="tamper")


# -- 4. path hygiene ----------------------------------------------------------------

BAD_PATHS = {
    "segment-300-bytes": "release/" + "x" * 300,
    "segment-256-bytes-utf8": "release/" + "é" * 128,
    "path-over-4096": "release/" + "/".join(["d" * 200] * 21),
    "c1-nel": "release/a\u0085b",
    "c1-csi": "release/a\u009bb",
    "bidi-override": "release/a\u202eb",
    "zero-width-joiner": "release/a\u200db",
    "line-separator": "release/a\u2028b",
    "paragraph-separator": "release/a\u2029b",
    "private-use": "release/a\ue000b",
    "unassigned": "release/a\u0378b",
    "lone-surrogate": "release/a\ud800b",
    "not-nfc": "release/e\u0301",
}


@pytest.mark.parametrize("name", list(BAD_PATHS))
def test_unclean_path_is_exit_2(make_ws, cli: Zygote, name: str) -> None:
    root = make_ws()
    doc = json.loads(prepare(root, {"release/a": b"payload"}, guards=False).read_bytes())
    doc["targets"][0]["path"] = BAD_PATHS[name]
    cap = root / "attack.json"
    cap.write_bytes(json.dumps(doc).encode())  # ensure_ascii: a lone surrogate as \ud800
    before = entries(root)
    r = cli("promote", cap, cwd=root)
    count("fuzz", "cases")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count(b"\n") == 1 and b"path" in r.stderr, r.stderr
    assert entries(root) == before
    check(root, cli, category="fuzz")


def test_a_state_that_cannot_be_materialized(make_ws, cli: Zygote, monkeypatch: Any) -> None:
    """A state committed before today's hygiene (a 300-byte name) does not wedge the
    view: `recover` says so in one line (exit 3), and later promotions show."""
    import promote.paths
    import promote.view  # bound to the real hygiene before the patch below
    from promote.gate import promote as run_gate
    from promote.verify import open_ledger
    from promote.workspace import Workspace

    root = make_ws()
    long_name = "release/" + "x" * 300
    monkeypatch.setattr(promote.paths, "why_bad", lambda path: None)  # an older version
    cap = prepare(root, {long_name: b"long", "release/ok": b"ok"}, name="old")
    ws = Workspace.load(root)
    outcome = run_gate(ws, open_ledger(ws), str(cap))
    monkeypatch.undo()
    assert outcome.exit_code == 3 and outcome.ledger is not None, outcome.reasons
    assert (root / "release/ok").read_bytes() == b"ok"  # every other path is shown
    r = cli("promote", "recover", cwd=root)
    count("tamper", "cases")
    assert r.returncode == 3, r.stderr
    assert r.stderr.count(b"\n") == 1 and b"cannot be materialized" in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr
    later = prepare(root, {"release/new": b"new"}, name="later")
    r = cli("promote", later, cwd=root)
    assert len(entries(root)) == 2, r.stderr
    assert (root / "release/new").read_bytes() == b"new"
    v = cli("promote", "verify", "--json", cwd=root)
    assert v.returncode == 3
    kinds = {(p["kind"], p["location"]) for p in json.loads(v.stdout)["problems"]}
    assert kinds == {("view-unmaterializable", long_name)}, kinds


# -- 5. config as untrusted input -----------------------------------------------------


def _edit_config(root: Path, **change: Any) -> None:
    path = root / CONFIG
    doc = json.loads(path.read_bytes())
    for key, value in change.items():
        if "." in key:
            section, sub = key.split(".")
            doc[section] = {**doc.get(section, {}), sub: value}
        else:
            doc[key] = value
    path.write_text(json.dumps(doc))


CONFIG_ATTACKS: dict[str, dict[str, Any]] = {
    "view-root-absolute": {"view.root": "/tmp"},
    "view-root-climbs": {"view.root": "../x"},
    "policy-dir-absolute": {"policy.dir": "/etc"},
    "policy-dir-climbs": {"policy.dir": "control/../../p"},
    "ledger-absolute": {"ledger": "/tmp/ledger"},
    "ledger-climbs": {"ledger": "../ledger"},
    "ledger-other-url": {"ledger": "http://example/ledger"},
    "store-climbs": {"store": "../store"},
    "store-other-url": {"store": "ftp://example/store"},
    "allow-control": {"allow": ["control/"]},
    "allow-execution": {"allow": ["execution/"]},
    "allow-inside-ledger": {"allow": ["execution/ledger/entries/"]},
    "allow-promote-meta": {"allow": [".promote/"]},
    "allow-store": {"allow": [".cas/"]},
    "allow-store-case-folded": {"allow": [".CAS/"]},
    "allow-git": {"allow": [".git/"]},
    "allow-policy-dir-moved": {"allow": ["rules/"], "policy.dir": "rules/policy"},
    "allow-via-view-root": {"view.root": ".promote", "allow": ["generations/"]},
}


@pytest.mark.parametrize("name", list(CONFIG_ATTACKS))
def test_config_cannot_leave_the_workspace(make_ws, cli: Zygote, name: str) -> None:
    root = make_ws()
    cap = prepare(root, {"release/a": b"1"})
    _edit_config(root, **CONFIG_ATTACKS[name])
    before = entries(root)
    count("fuzz", "cases")
    for argv in ([str(cap)], ["verify"], ["recover"]):
        r = cli("promote", *argv, cwd=root)
        assert r.returncode == 2, (argv, r.returncode, r.stderr)
        assert r.stderr.count(b"\n") == 1 and b"config.json" in r.stderr, r.stderr
    r = cli("cas", "fsck", cwd=root)
    assert r.returncode == 2, r.stderr
    assert entries(root) == before


def test_cas_store_disagreeing_with_the_config(make_ws, cli: Zygote, tmp_path: Path) -> None:
    root = make_ws()
    other = tmp_path / "other"
    assert cli("cas", "init", other, cwd=tmp_path).returncode == 0
    cap = prepare(root, {"release/a": b"1"})
    env = {"CAS_STORE": str(other)}
    count("fuzz", "cases")
    for prog, argv in (("promote", [str(cap)]), ("promote", ["verify"]), ("cas", ["fsck"])):
        r = cli(prog, *argv, cwd=root, env=env)
        assert r.returncode == 2 and b"CAS_STORE" in r.stderr, (prog, r.stderr)
    assert entries(root) == []
    same = {"CAS_STORE": str(root / ".cas")}  # repeating the config is fine
    assert cli("promote", cap, cwd=root, env=same).returncode == 0
    check(root, cli, category="fuzz")


@pytest.mark.parametrize("what", [".cas", "execution", "execution/ledger", "control/policy"])
def test_symlinked_store_and_ledger_are_reported(
    make_ws, cli: Zygote, tmp_path: Path, what: str
) -> None:
    root = make_ws()
    _promoted(root, cli)
    moved = tmp_path / "moved"
    shutil.move(root / what, moved)
    (root / what).symlink_to(moved)
    count("tamper", "cases")
    r = cli("promote", "verify", "--json", cwd=root)
    assert r.returncode == 3, r.stderr
    found = {(p["kind"], p["location"]) for p in json.loads(r.stdout)["problems"]}
    assert found == {("symlinked", what)}, found


# -- issue 14, items 2 and 9: promote init ------------------------------------------------


def test_init_validates_before_writing(tmp_path: Path, cli: Zygote) -> None:
    r = cli("promote", "init", "ws", "--allow", "release", cwd=tmp_path)
    assert r.returncode == 2 and b"'release'" in r.stderr, r.stderr
    assert r.stderr.count(b"\n") == 1
    assert not (tmp_path / "ws").exists()  # nothing written, nothing to hand-edit
    r = cli("promote", "init", "ws", "--allow", "release/", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert cli("promote", "status", cwd=tmp_path / "ws").returncode == 0


def test_init_on_an_existing_workspace(tmp_path: Path, cli: Zygote) -> None:
    assert cli("promote", "init", "ws", cwd=tmp_path).returncode == 0
    config = (tmp_path / "ws" / CONFIG).read_bytes()
    assert cli("promote", "init", "ws", cwd=tmp_path).returncode == 0  # same options: fine
    r = cli("promote", "init", "ws", "--mode", "copy", "--allow", "other/", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert b"view.mode" in r.stderr and b"allow" in r.stderr and b"--force" in r.stderr
    assert (tmp_path / "ws" / CONFIG).read_bytes() == config
    r = cli("promote", "init", "ws", "--allow", "control/", "--force", cwd=tmp_path)
    assert r.returncode == 2 and (tmp_path / "ws" / CONFIG).read_bytes() == config
    r = cli("promote", "init", "ws", "--allow", "other/", "--force", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "ws" / CONFIG).read_bytes())["allow"] == ["other/"]


# -- the store's tmp/ ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_odd_entries_in_store_tmp(make_ws, cli: Zygote, tmp_path: Path, kind: str) -> None:
    """A FIFO or a link in the store's tmp/ neither blocks fsck or gc nor is followed."""
    root = make_ws()
    _promoted(root, cli)
    target = tmp_path / "victim"
    target.write_bytes(b"keep me")
    odd = root / ".cas/tmp/planted"
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to(target)
    count("tamper", "cases")
    r = cli("cas", "fsck", "--json", cwd=root)
    assert r.returncode == 3, r.stderr
    found = {(p["kind"], p["location"]) for p in json.loads(r.stdout)["problems"]}
    assert found == {("not-regular", "tmp/planted")}, found
    assert cli("cas", "gc", "--grace", "0", cwd=root).returncode == 0
    assert target.read_bytes() == b"keep me"
    assert os.path.lexists(odd)  # not ours to remove: reported
