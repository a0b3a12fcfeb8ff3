"""Tampering and corruption: fsck names it, exits 3, and sets it aside, never deletes.

Invariant: for every kind of damage, `cas fsck` exits 3 and names it (kind and
location) in text and in --json, and `promote verify` agrees; `cas fsck --quarantine`
moves bad objects into quarantine/ and deletes nothing; once the damage is repaired
(the bytes re-supplied, the ledger file restored from a copy, `promote recover` for
derived state), the checker is clean again.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest
import rfc8785
from reliability.checker import check, count
from reliability.scenario import Zygote, prepare

ENTRIES = "execution/ledger/entries"


def _released(root: Path, cli: Zygote) -> dict[str, bytes]:
    """Three promotions, plus an object nothing references."""
    files = {}
    for n, batch in enumerate(
        [{"release/a": b"a1", "release/b": b"b" * 300}, {"release/a": b"a2"}, {"release/c": b"c3"}]
    ):
        cap = prepare(root, batch, name=f"p{n}")
        assert cli("promote", cap, cwd=root).returncode == 0
        files.update(batch)
    prepare(root, {"release/z": b"unreferenced"}, name="unused")
    return files


def _obj(root: Path, data: bytes) -> Path:
    h = blake3.blake3(data).hexdigest()
    return root / ".cas/objects/blake3" / h[:2] / h[2:]


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root / ".cas").as_posix()


def _writable(path: Path) -> None:
    os.chmod(path, 0o644)
    os.chmod(path.parent, 0o755)


def _fsck_names(
    root: Path, cli: Zygote, expect: list[tuple[str, str]], verify_too: bool = True
) -> None:
    """fsck (text and JSON) exits 3 and names every expected problem."""
    import fnmatch

    text = cli("cas", "fsck", cwd=root)
    js = cli("cas", "fsck", "--json", cwd=root)
    verify = cli("promote", "verify", "--json", cwd=root)
    assert text.returncode == js.returncode == 3, (text.stdout, text.stderr)
    assert verify.returncode == (3 if verify_too else 0), verify.stdout
    found = {(p["kind"], p["location"]) for p in json.loads(js.stdout)["problems"]}
    found |= {(p["kind"], p["location"]) for p in json.loads(verify.stdout)["problems"]}
    lines = text.stdout.decode().splitlines()
    for kind, glob in expect:
        hits = [loc for k, loc in found if k == kind and fnmatch.fnmatch(loc, glob)]
        assert hits, (kind, glob, found)
        assert any(line.startswith(f"{kind}:") for line in lines), (kind, lines)


# -- objects ----------------------------------------------------------------------


def flip(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]


OBJECT_CASES: dict[str, Callable[[bytes, bytes, random.Random], bytes]] = {
    "bit-flip": lambda data, other, rng: flip(data, rng),
    "truncate": lambda data, other, rng: data[: rng.randrange(len(data))],
    "swap-for-another-object": lambda data, other, rng: other,
}


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", list(OBJECT_CASES))
def test_damaged_object(make_ws, cli: Zygote, case: str, seed: int) -> None:
    """A referenced object (a target) or an unreferenced one, damaged in place."""
    rng = random.Random(f"{case}-{seed}")
    root = make_ws()
    files = _released(root, cli)
    referenced = seed != 2
    data = files["release/b"] if referenced else b"unreferenced"
    other = files["release/c"]
    path = _obj(root, data)
    _writable(path)
    path.write_bytes(OBJECT_CASES[case](data, other, rng))
    os.chmod(path, 0o444)
    count("tamper", "cases")
    expect = [("mismatch", _rel(root, path))]
    if referenced:
        got = path.stat().st_size
        expect.append(("truncated" if got < len(data) else "mismatch", "ledger entry *"))
        # and the entry that promoted it no longer re-justifies: its bytes are not there
        expect.append(("unjustified", "ledger entry *"))
    _fsck_names(root, cli, expect, verify_too=referenced)
    check(root, cli, category="tamper", expect=expect, oracle=False)
    q = cli("cas", "fsck", "--quarantine", cwd=root)
    assert q.returncode == 3
    assert not path.exists()
    assert (root / ".cas/quarantine" / _rel(root, path)).is_file()  # set aside, not deleted
    src = root / "resupplied"
    src.write_bytes(data)
    assert cli("cas", "put", src, cwd=root).returncode == 0  # the builder supplies it again
    check(root, cli, category="tamper")


# -- the ledger -----------------------------------------------------------------------


def _entry(root: Path, n: int) -> Path:
    return root / ENTRIES / f"{n:012d}.json"


def _edit(root: Path) -> list[tuple[str, str]]:
    p = _entry(root, 2)
    _writable(p)
    p.write_bytes(p.read_bytes().replace(b'"size":2', b'"size":3', 1))
    return [("ledger", "ledger entry *")]


def _delete_middle(root: Path) -> list[tuple[str, str]]:
    _entry(root, 2).unlink()
    return [("ledger", "*")]


def _delete_last(root: Path) -> list[tuple[str, str]]:
    _entry(root, 3).unlink()
    return [("ledger", "*")]


def _reorder(root: Path) -> list[tuple[str, str]]:
    a, b = _entry(root, 2), _entry(root, 3)
    tmp = a.with_suffix(".swap")
    os.rename(a, tmp)
    os.rename(b, a)
    os.rename(tmp, b)
    return [("ledger", "*")]


def _rehash_link(root: Path) -> list[tuple[str, str]]:
    """Edit entry 2 canonically and re-link entry 3 to its new hash."""
    e2, e3 = _entry(root, 2), _entry(root, 3)
    doc2 = json.loads(e2.read_bytes())
    doc2["changes"][0]["to"] = {"digest": "blake3:" + "ab" * 32, "size": 2}
    new2 = rfc8785.dumps(doc2)
    doc3 = json.loads(e3.read_bytes())
    doc3["prev"] = "blake3:" + blake3.blake3(new2).hexdigest()
    for p, data in ((e2, new2), (e3, rfc8785.dumps(doc3))):
        _writable(p)
        p.write_bytes(data)
    return [("ledger", "*")]


def _rehash_all(root: Path) -> list[tuple[str, str]]:
    """Rewrite the last entry to point elsewhere, with a true state and HEAD: the chain
    is whole, but the entry no longer re-justifies (its signature, its capsule and its
    decision do not say so): an integrity failure, not a stale view."""
    from cas.local import LocalStore

    store = LocalStore.existing(root / ".cas")
    e3 = _entry(root, 3)
    doc = json.loads(e3.read_bytes())
    evil = store.put_bytes(b"evil")
    doc["changes"][0]["to"] = evil.to_dict()
    before = json.loads(store.read_bytes(_digest(doc["state_before"])))
    before["pointers"][doc["changes"][0]["path"]] = evil.to_dict()
    state = store.put_bytes(rfc8785.dumps(before))
    doc["state_after"] = state.to_dict()
    data = rfc8785.dumps(doc)
    _writable(e3)
    e3.write_bytes(data)
    head = {
        "seq": 3,
        "entry": "blake3:" + blake3.blake3(data).hexdigest(),
        "state": state.to_dict(),
    }
    (root / "execution/ledger/HEAD").write_bytes(rfc8785.dumps(head))
    return [("unjustified", "ledger entry 3")]


def _digest(ref: dict) -> object:
    from cas.digest import Digest

    return Digest.parse(ref["digest"])


def _head_pointer(root: Path) -> list[tuple[str, str]]:
    """The pointer state in HEAD edited by hand to an older state."""
    head = root / "execution/ledger/HEAD"
    doc = json.loads(head.read_bytes())
    doc["state"] = json.loads(_entry(root, 1).read_bytes())["state_after"]
    head.write_bytes(rfc8785.dumps(doc))
    return [("pointer", "*")]


LEDGER_CASES = {
    "edited-entry": _edit,
    "deleted-middle-entry": _delete_middle,
    "deleted-last-entry": _delete_last,
    "reordered-entries": _reorder,
    "rehashed-entry-relinked": _rehash_link,
    "rehashed-chain-and-head": _rehash_all,
    "head-pointer-edited": _head_pointer,
}


@pytest.mark.parametrize("case", list(LEDGER_CASES))
def test_tampered_ledger(make_ws, cli: Zygote, case: str) -> None:
    root = make_ws()
    _released(root, cli)
    saved = {p.name: p.read_bytes() for p in (root / "execution/ledger").rglob("*") if p.is_file()}
    expect = LEDGER_CASES[case](root)
    count("tamper", "cases")
    _fsck_names(root, cli, expect)
    q = cli("cas", "fsck", "--quarantine", cwd=root)
    assert q.returncode == 3
    left = {p.name for p in (root / "execution/ledger").rglob("*") if p.is_file()}
    assert set(saved) - {"000000000002.json", "000000000003.json"} <= left  # nothing deleted
    # repair: the ledger from its copy (a git checkout, a backup), derived state by recover
    for p in (root / ENTRIES).glob("*.json"):
        p.unlink()
    for name, data in saved.items():
        dest = root / ("execution/ledger" if name in ("HEAD", ".lock") else ENTRIES) / name
        dest.write_bytes(data)
    assert cli("promote", "recover", cwd=root).returncode == 0
    check(root, cli, category="tamper")


# -- the view ---------------------------------------------------------------------------


def _retarget(root: Path) -> list[tuple[str, str]]:
    gen = (root / ".promote/current").resolve()
    link = gen / "release/a"
    os.chmod(link.parent, 0o755)
    target = os.path.relpath(_obj(root, b"c3"), link.parent)
    link.unlink()
    link.symlink_to(target)
    return [("view-pointer", "release/a")]


def _drop(root: Path) -> list[tuple[str, str]]:
    gen = (root / ".promote/current").resolve()
    os.chmod(gen / "release", 0o755)
    (root / "release/dropped").write_bytes(b"ad hoc")
    return [("unpromoted", "release/dropped")]


def _outside_link(root: Path) -> list[tuple[str, str]]:
    gen = (root / ".promote/current").resolve()
    os.chmod(gen / "release", 0o755)
    (gen / "release/passwd").symlink_to("/etc/passwd")
    return [("unpromoted", "release/passwd")]


VIEW_CASES = {
    "pointer-edited-by-hand": _retarget,
    "file-dropped-into-view": _drop,
    "symlink-out-of-the-view": _outside_link,
}


@pytest.mark.parametrize("case", list(VIEW_CASES))
def test_tampered_view(make_ws, cli: Zygote, case: str) -> None:
    root = make_ws()
    _released(root, cli)
    expect = VIEW_CASES[case](root)
    count("tamper", "cases")
    _fsck_names(root, cli, expect)
    check(root, cli, category="tamper", expect=expect, oracle=False)
    gen = (root / ".promote/current").resolve()
    assert cli("promote", "recover", cwd=root).returncode == 0
    aside = list((root / ".promote/quarantine").iterdir())
    assert [p.name for p in aside] == [f"{gen.name}.0"]  # the evidence is kept
    check(root, cli, category="tamper")
    shutil.rmtree(root / ".promote/quarantine", ignore_errors=True)
