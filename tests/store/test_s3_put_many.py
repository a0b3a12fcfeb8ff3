"""`S3Store.put_many` and `cas put` of many files to S3: several uploads at once, the
references in input order, each once its object is stored; a failing input or a
server stopped mid-batch reports exactly what was stored, and what was is complete.

Against real SeaweedFS servers (tests/servers.py): the session's, and one of this
module's own for the tests that kill it.
"""

from __future__ import annotations

import io
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, script
from servers import S3Server, seaweedfs

from cas.digest import ObjectRef, hash_bytes
from cas.errors import EXIT_INTERNAL, EXIT_USAGE, CasError, UsageError
from cas.s3 import MIN_PART, S3Store, S3StoreError

MakeStore = Callable[..., S3Store]


@pytest.fixture
def make_store(s3_server: S3Server) -> MakeStore:
    def make(**kw: Any) -> S3Store:
        url = f"s3://{s3_server.new_bucket()}/{uuid.uuid4().hex[:8]}"
        return S3Store.init(url, client=s3_server.client(), **kw)

    return make


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A server of this module's own, which its tests stop and start again."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs-put-many")) as server:
        yield server


class InFlight:
    """The most requests of each operation a client had in flight at once."""

    def __init__(self, store: S3Store) -> None:
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}
        self.lock = threading.Lock()
        events = store.client.meta.events
        events.register("before-call.s3.*", self._start)
        events.register("after-call.s3.*", self._end)
        events.register("after-call-error.s3.*", self._end)

    def _start(self, event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[1]
        with self.lock:
            self.now[op] = self.now.get(op, 0) + 1
            self.most[op] = max(self.most.get(op, 0), self.now[op])

    def _end(self, event_name: str, **_: Any) -> None:
        with self.lock:
            self.now[event_name.rsplit(".", 1)[1]] -= 1


def files(root: Path, contents: list[bytes]) -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, data in enumerate(contents):
        path = root / f"f{n:04d}"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def collect(
    store: S3Store, sources: list[Any], **kw: Any
) -> tuple[dict[int, ObjectRef], dict[int, CasError], CasError | None]:
    """Run put_many as `cas put` does: each ref's index is the next one not failed."""
    failed: dict[int, CasError] = {}
    got: dict[int, ObjectRef] = {}
    i = 0
    try:
        for ref in store.put_many(sources, on_error=failed.__setitem__, **kw):
            while i in failed:
                i += 1
            got[i] = ref
            i += 1
    except CasError as e:
        return got, failed, e
    return got, failed, None


def test_put_many_uploads_at_once_and_yields_in_input_order(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store()
    contents = [os.urandom(n % 3 * 4096 + n) for n in range(120)] + [b"same", b"same"]
    paths = files(tmp_path, contents)
    flight = InFlight(store)
    staged: list[int] = []
    refs = list(store.put_many(paths, progress=staged.append, jobs=8))
    assert refs == [hash_bytes(data) for data in contents]
    assert staged == [len(data) for data in contents]
    assert 1 < flight.most["PutObject"] <= 8
    for ref in refs:
        store.verify(ref)
    assert store.fsck() == []


def test_parts_of_large_objects_share_the_bound(make_store: MakeStore, tmp_path: Path) -> None:
    """Three multipart uploads with `jobs=2`: at most two parts in flight in the batch."""
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART, max_concurrency=4)
    contents = [os.urandom(3 * MIN_PART + n) for n in range(3)] + [b"small"]
    flight = InFlight(store)
    refs = list(store.put_many(files(tmp_path, contents), jobs=2))
    assert refs == [hash_bytes(data) for data in contents]
    assert flight.most["UploadPart"] <= 2
    for ref in refs:
        store.verify(ref)
    assert store.fsck() == []
    r = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=f"{store.prefix}/")
    assert r.get("Uploads", []) == []


def test_streams_are_read_in_input_order(make_store: MakeStore, tmp_path: Path) -> None:
    """Two reads of one stream among paths: the first gets its bytes, as one by one."""
    store = make_store()
    stream = io.BytesIO(b"from the stream")
    paths = files(tmp_path, [os.urandom(100) for _ in range(40)])
    sources: list[Any] = [*paths[:20], stream, *paths[20:], stream]
    refs = list(store.put_many(sources, jobs=4))
    assert refs[20] == hash_bytes(b"from the stream")
    assert refs[-1] == hash_bytes(b"")
    assert refs[:20] + refs[21:-1] == [hash_bytes(Path(p).read_bytes()) for p in paths]


def test_failed_inputs_mid_batch_are_reported_and_the_rest_stored(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store()
    contents = [os.urandom(1000 + n) for n in range(60)]
    paths = files(tmp_path / "in", contents)
    (tmp_path / "a-directory").mkdir()
    sources = [*paths[:25], str(tmp_path / "missing"), *paths[25:40], str(tmp_path / "a-directory")]
    sources += paths[40:]
    got, failed, raised = collect(store, sources, jobs=6)
    assert raised is None
    assert sorted(failed) == [25, 41]
    assert all(isinstance(e, UsageError) for e in failed.values())
    assert "no such file" in str(failed[25]) and "is a directory" in str(failed[41])
    want = {i: hash_bytes(Path(s).read_bytes()) for i, s in enumerate(sources) if i not in failed}
    assert got == want
    for ref in got.values():
        store.verify(ref)
    # Without on_error the first failure ends the batch, after every ref before it.
    store = make_store()
    refs = []
    with pytest.raises(UsageError, match="no such file"):
        for ref in store.put_many(sources, jobs=6):
            refs.append(ref)
    assert refs == [want[i] for i in range(25)]


def test_cli_put_of_many_is_in_input_order_with_errors_in_place(
    s3_server: S3Server, make_store: MakeStore, tmp_path: Path
) -> None:
    """`cas put` prints what one upload at a time prints, and stores what it prints."""
    store = make_store()
    names = files(tmp_path, [os.urandom(n + 1) for n in range(150)])
    names = [Path(n).name for n in names]
    (tmp_path / "dir").mkdir()
    args = [*names[:70], "dir", *names[70:], "-", "gone"]
    env = clean_env(s3_server.env())

    def put(*jobs: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [script("cas"), "--store", store.location, "put", *jobs, *args]
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, input=b"stdin", capture_output=True, timeout=300
        )

    r = put()
    assert r.returncode == EXIT_USAGE
    want = [
        f"{hash_bytes((tmp_path / n).read_bytes()).digest}  {(tmp_path / n).stat().st_size}  {n}"
        for n in names
    ]
    want.append(f"{hash_bytes(b'stdin').digest}  5  -")
    assert r.stdout.decode().splitlines() == want
    err = r.stderr.decode().splitlines()
    assert len(err) == 2 and "dir: is a directory" in err[0] and "gone: no such file" in err[1]
    # One at a time (the store already holds them all): the same output, byte for byte.
    one = put("-j", "1")
    assert (one.returncode, one.stdout, one.stderr) == (r.returncode, r.stdout, r.stderr)
    for line in want:
        digest, size, _ = line.split("  ")
        store.verify(ObjectRef.from_dict({"digest": digest, "size": int(size)}))
    assert store.fsck() == []


def test_server_stopped_mid_batch_reports_exactly_what_was_stored(
    own_server: S3Server, tmp_path: Path
) -> None:
    """The server dies (SIGKILL) right after acknowledging its 30th object: every
    object acknowledged before is reported, in order, and nothing is reported that was
    not stored; after a restart each reported object is there and verifies."""
    assert own_server.weed is not None
    weed = own_server.weed
    url = f"s3://{own_server.new_bucket()}/p"
    S3Store.init(url, client=own_server.client())
    store = S3Store.existing(url, client=own_server.client())
    contents = [os.urandom(2000 + n) for n in range(200)]
    sources = files(tmp_path, contents)
    acked = 0

    def count(http_response: Any, **_: Any) -> None:
        nonlocal acked
        if http_response.status_code == 200:
            acked += 1
            if acked == 30:
                weed.kill()

    store.client.meta.events.register("after-call.s3.PutObject", count)
    try:
        got, failed, raised = collect(store, sources, jobs=8)
    finally:
        weed.start()
    assert isinstance(raised, S3StoreError) and raised.exit_code == EXIT_INTERNAL
    assert any(e is raised for e in failed.values())  # passed to on_error first
    assert all(isinstance(e, S3StoreError) for e in failed.values())
    settled = sorted([*got, *failed])
    assert settled == list(range(len(settled)))  # every index up to the last is known
    assert len(got) >= 30
    assert got == {i: hash_bytes(contents[i]) for i in got}
    store = S3Store.existing(url, client=own_server.client())
    for ref in got.values():
        store.verify(ref)
    assert store.fsck() == []


def test_cli_server_stopped_mid_batch(own_server: S3Server, tmp_path: Path) -> None:
    """`cas put` of 1,000 files while the server is killed: one error line, exit 1,
    and a line (in input order) for each object that is then there and verifies."""
    assert own_server.weed is not None
    url = f"s3://{own_server.new_bucket()}/p"
    store = S3Store.init(url, client=own_server.client())
    names = [Path(n).name for n in files(tmp_path, [os.urandom(512) for _ in range(1000)])]
    env = clean_env(own_server.env(AWS_MAX_ATTEMPTS="1"))
    proc = subprocess.Popen(
        [script("cas"), "--store", url, "put", *names],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watcher = own_server.client()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            listed = watcher.list_objects_v2(Bucket=store.bucket, Prefix="p/blake3/")
            if listed.get("KeyCount", 0) >= 100:
                own_server.weed.kill()
                break
            time.sleep(0.02)
        out, err = proc.communicate(timeout=300)
    finally:
        if own_server.weed.proc is None or own_server.weed.proc.poll() is not None:
            own_server.weed.start()
    assert proc.returncode == EXIT_INTERNAL, err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cas: error: "), lines
    printed = [line.split("  ") for line in out.decode().splitlines()]
    assert len(printed) >= 100
    assert [name for _, _, name in printed] == sorted(name for _, _, name in printed)
    store = S3Store.existing(url, client=own_server.client())
    for digest, size, name in printed:
        ref = hash_bytes((tmp_path / name).read_bytes())
        assert (str(ref.digest), str(ref.size)) == (digest, size)
        store.verify(ref)
    assert store.fsck() == []
