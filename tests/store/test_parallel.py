"""fsck and `put_many` on several processes (`--jobs`): the same results, in the same
order, with the same guarantees as in one; `cas --version` and the one-file put's dedup."""

from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path

import pytest
from conftest import Cli

import cas.local
from cas._version import __version__
from cas._workers import fork_map
from cas.digest import hash_bytes
from cas.errors import UsageError
from cas.local import LocalStore

ROOT = Path(__file__).resolve().parents[2]


def _children() -> set[int]:
    """This process's live children (Linux)."""
    out: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        try:
            text = Path(f"/proc/{os.getpid()}/task/{task}/children").read_text()
        except OSError:
            continue
        out |= {int(p) for p in text.split()}
    return out


_BEFORE: set[int] = set()


@pytest.fixture(autouse=True)
def _children_before() -> None:
    """The children alive before each test: the session's servers (PostgreSQL,
    SeaweedFS) are children of this process too, and are not a test's leftovers."""
    global _BEFORE
    _BEFORE = _children()


def _left_over() -> set[int]:
    """Children started during this test and still alive."""
    return _children() - _BEFORE


def _inputs(tmp_path: Path, n: int = 200) -> tuple[list[Path], list[bytes]]:
    """`n` paths: small files, repeats of earlier ones (in other chunks), two files
    larger than `SMALL` (streamed by a worker), an empty one."""
    paths, contents = [], []
    for i in range(n):
        if i % 7 == 3:
            data = contents[i // 2]  # the same bytes as an earlier input
        elif i in (40, 150):
            data = os.urandom(cas.local.SMALL + 1000 * i)
        elif i == 99:
            data = b""
        else:
            data = os.urandom(64 + i)
        p = tmp_path / f"f{i:03d}"
        p.write_bytes(data)
        paths.append(p)
        contents.append(data)
    return paths, contents


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_put_many_matches_one_process(
    store: LocalStore, tmp_path: Path, jobs: int
) -> None:
    paths, contents = _inputs(tmp_path)
    inputs: list[Path] = [*paths[:10], tmp_path / "missing", *paths[10:120], tmp_path, *paths[120:]]
    errors: list[tuple[int, str]] = []
    sizes: list[int] = []
    refs = list(
        store.put_many(
            inputs,
            progress=sizes.append,
            on_error=lambda i, e: errors.append((i, str(e))),
            jobs=jobs,
        )
    )
    assert refs == [hash_bytes(c) for c in contents]
    assert [i for i, _ in errors] == [10, 121]
    assert "no such file" in errors[0][1] and "is a directory" in errors[1][1]
    assert sizes == [len(c) for c in contents]  # progress: each source's bytes, in order
    assert store.fsck(jobs=1) == []
    assert list(store.tmp.iterdir()) == []
    assert _left_over() == set()
    # again: everything is stored, the objects are not rewritten
    inodes = {r.digest: os.stat(store.object_path(r.digest)).st_ino for r in refs}
    assert list(store.put_many(paths, jobs=jobs)) == refs
    assert {d: os.stat(store.object_path(d)).st_ino for d in inodes} == inodes


def test_parallel_put_many_commits_what_came_before_an_error(
    store: LocalStore, tmp_path: Path
) -> None:
    paths, contents = _inputs(tmp_path, 120)
    fresh = tmp_path / "late"
    fresh.write_bytes(b"after the error")
    got = []
    with pytest.raises(UsageError, match="no such file"):
        for ref in store.put_many([*paths, tmp_path / "missing", fresh], jobs=2):
            assert store.has(ref.digest)  # durable and in place before it is handed out
            got.append(ref)
    assert got == [hash_bytes(c) for c in contents]
    assert not store.has(hash_bytes(b"after the error").digest)
    assert list(store.tmp.iterdir()) == []  # what the workers staged beyond it is gone
    assert _left_over() == set()


def test_parallel_put_many_closed_early_leaves_nothing(store: LocalStore, tmp_path: Path) -> None:
    paths, _ = _inputs(tmp_path)
    it = store.put_many(paths, jobs=2)
    first = [next(it) for _ in range(5)]
    it.close()
    assert all(store.has(r.digest) for r in first)
    assert list(store.tmp.iterdir()) == []
    assert _left_over() == set()
    assert store.fsck() == []


def test_parallel_put_many_commits_in_batches(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cas.local, "BATCH_BYTES", 1000)
    paths, contents = _inputs(tmp_path, 100)
    for ref in store.put_many(paths, jobs=2):
        assert store.has(ref.digest)
    assert all(store.has(hash_bytes(c).digest) for c in contents)
    assert list(store.tmp.iterdir()) == []


def _damaged_store(store: LocalStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A store with one of every object problem, among many good objects."""
    monkeypatch.setattr(cas.local, "BIG", 1 << 16)
    monkeypatch.setattr(cas.local, "WINDOW", 1 << 15)
    refs = [store.put_bytes(os.urandom(100 + i)) for i in range(150)]
    refs += [store.put_bytes(os.urandom(200_000 + i)) for i in range(3)]
    small, big, loose, link = refs[7], refs[-1], refs[80], refs[120]
    for ref in (small, big):
        path = store.object_path(ref.digest)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:  # flip a byte: writing a fixed one may change nothing
            f.seek(50)
            old = f.read(1)
            f.seek(50)
            f.write(bytes([old[0] ^ 0xFF]))
        os.chmod(path, 0o444)
    os.chmod(store.object_path(loose.digest), 0o644)
    target = store.object_path(link.digest)
    os.unlink(target)
    os.symlink(store.object_path(refs[0].digest), target)
    (store.objects / "ab" / "not-a-digest").parent.mkdir(exist_ok=True)
    (store.objects / "ab" / "not-a-digest").write_bytes(b"x")
    return [str(r.digest) for r in (small, big, loose, link)]


@pytest.mark.parametrize("jobs", [2, 4])
def test_parallel_fsck_reports_what_one_process_does(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    bad = _damaged_store(store, monkeypatch)
    one = store.fsck(jobs=1)
    assert store.checked == 153
    done: list[tuple[int, int]] = []
    many = store.fsck(jobs=jobs, progress=lambda d, t: done.append((d, t)))
    assert many == one == sorted(one)
    assert store.checked == 153
    assert sorted({p.digest for p in one if p.digest}) == sorted(bad)
    assert {p.kind for p in one} == {"mismatch", "permissions", "not-regular", "misplaced"}
    assert done[-1][0] == done[-1][1] > 0  # progress in bytes, ending at the total
    assert [d for d, _ in done] == sorted(d for d, _ in done)
    assert _left_over() == set()


def test_fork_map_runs_every_task_and_raises_a_worker_error() -> None:
    got = dict(fork_map(lambda x: x * x, list(range(50)), 3))
    assert got == {i: i * i for i in range(50)}

    def boom(x: int) -> int:
        if x == 17:
            raise UsageError("seventeen")
        return x

    with pytest.raises(UsageError, match="seventeen"):
        dict(fork_map(boom, list(range(50)), 3))
    assert _left_over() == set()


def test_fork_map_notices_a_dead_worker() -> None:
    def die(x: int) -> int:
        if x == 5:
            os._exit(9)
        return x

    with pytest.raises(RuntimeError, match="worker"):
        dict(fork_map(die, list(range(20)), 2))
    assert _left_over() == set()


def test_put_of_a_stored_small_file_writes_nothing(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "small"
    src.write_bytes(b"stored already")
    with open(src, "rb", buffering=0) as f:
        ref = store.put(f)

    def no_temp(*a: object, **k: object) -> None:
        raise AssertionError("a temp file was made for a stored object")

    monkeypatch.setattr(cas.local, "make_temp", no_temp)
    with open(src, "rb", buffering=0) as f:
        assert store.put(f) == ref
    with open(src, "rb", buffering=0) as f:  # a new one still gets its temp
        f2 = tmp_path / "new"
        f2.write_bytes(b"new bytes")
        with open(f2, "rb", buffering=0) as g, pytest.raises(AssertionError):
            store.put(g)


def test_version_is_the_distributions(cas: Cli) -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert __version__ == meta == importlib.metadata.version("cas-promote")
    for args in (["--version"], ["--store", "x", "--version"]):
        r = cas(*args)
        assert r.returncode == 0
        assert r.stdout.decode() == f"cas, version {__version__}\n"


def test_cli_jobs(cas: Cli, work: Path) -> None:
    names = []
    for i in range(80):
        (work / f"in{i:02d}").write_bytes(b"%d" % (i % 50))
        names.append(f"in{i:02d}")
    for jobs in ("1", "3"):
        r = cas("put", "--jobs", jobs, *names)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().splitlines()
        assert [line.split()[2] for line in lines] == names
        assert [line.split()[0] for line in lines] == [
            str(hash_bytes(b"%d" % (i % 50)).digest) for i in range(80)
        ]
    r = cas("fsck", "-j", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"fsck: 50 objects checked, clean\n"
    assert cas("fsck", "--jobs", "0").returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        ["put", "a"],
        ["put", "a", "b", "--json"],
        ["-q", "put", "-j", "2", "a", "b", "-v"],
        ["--store=.cas", "put", "--jobs=3", "a", "missing", "b"],
        ["put", "--json", "a", "dir"],
        ["put", "-r", "dir", "a"],
        ["put", "-j2", "nothing-here"],
        ["put", "--json", "nothing-here"],
    ],
)
def test_plain_put_runs_without_click_and_prints_what_click_does(
    work: Path, args: list[str]
) -> None:
    import subprocess
    import sys

    from cas._entry import plain_put

    assert plain_put(args) is not None
    (work / "a").write_bytes(b"alpha")
    (work / "b").write_bytes(b"beta")
    (work / "dir").mkdir()
    (work / "dir" / "c").write_bytes(b"gamma")
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: sys.stderr.write('click:%s' % ('click' in sys.modules)))\n"
        "sys.argv = ['cas', *sys.argv[1:]]\n"
        "from cas.{} import run\n"
        "run()\n"
    )
    got = {}
    for module in ("_entry", "cli"):
        r = subprocess.run(
            [sys.executable, "-c", probe.format(module), *args],
            cwd=work,
            capture_output=True,
            env={**os.environ, "CAS_STORE": ""},
        )
        err, _, loaded = r.stderr.decode().rpartition("click:")
        got[module] = (r.returncode, r.stdout, err)
        assert loaded == ("False" if module == "_entry" else "True")
    assert got["_entry"] == got["cli"]


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["put"],
        ["--help"],
        ["put", "--help"],
        ["put", "-"],
        ["put", "--", "a"],
        ["put", "-x", "a"],
        ["put", "-j", "0", "a"],
        ["put", "-j", "+1", "a"],
        ["put", "-j=2", "a"],
        ["put", "-rj2", "a"],
        ["put", "--jobs"],
        ["--store", "-q", "put", "a"],
        ["--json", "put", "a"],
        ["--store"],
        ["ls"],
        ["hash", "put"],
        ["put", "--json=1", "a"],
    ],
)
def test_anything_but_a_plain_put_goes_to_click(args: list[str]) -> None:
    from cas._entry import plain_put

    assert plain_put(args) is None
