"""What only the S3 backend has: multipart uploads, conditional writes, temp keys,
and the `cas` console script against a real SeaweedFS server.

The contract every backend fulfils is in test_store_contract.py, which runs on S3 too.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import clean_env, run_cli, script
from servers import S3Server

from cas.digest import hash_bytes
from cas.errors import EXIT_INTERNAL, EXIT_USAGE, StoreNotFound, UsageError
from cas.s3 import MIN_PART, S3AccessDenied, S3Store, S3StoreError, parse_s3_url

MakeStore = Callable[..., S3Store]


@pytest.fixture
def make_store(s3_server: S3Server) -> MakeStore:
    """A fresh store (new bucket, new prefix) on the session's server."""

    def make(**kw: Any) -> S3Store:
        url = f"s3://{s3_server.new_bucket()}/{uuid.uuid4().hex[:8]}"
        return S3Store.init(url, client=s3_server.client(), **kw)

    return make


class Calls:
    """Every S3 operation a client made, with its HTTP status."""

    def __init__(self, store: S3Store) -> None:
        self.seen: list[tuple[str, int]] = []
        store.client.meta.events.register("after-call.s3.*", self._record)

    def _record(self, http_response: Any, model: Any, **_: Any) -> None:
        self.seen.append((model.name, http_response.status_code))

    def count(self, op: str, status: int | None = None) -> int:
        return sum(1 for o, s in self.seen if o == op and (status is None or s == status))

    def clear(self) -> None:
        self.seen.clear()


def keys(store: S3Store, under: str = "") -> list[str]:
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=f"{store.prefix}/{under}"
    )
    return [o["Key"][len(store.prefix) + 1 :] for p in pages for o in p.get("Contents", [])]


def uploads(store: S3Store) -> list[str]:
    r = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=f"{store.prefix}/")
    return [u["Key"] for u in r.get("Uploads", [])]


# -- puts ----------------------------------------------------------------------


def test_small_put_is_one_conditional_request(make_store: MakeStore) -> None:
    store = make_store()
    calls = Calls(store)
    ref = store.put(io.BytesIO(b"small"))
    assert calls.seen == [("PutObject", 200)]
    assert keys(store) == [
        f"blake3/{ref.digest.hex[:2]}/{ref.digest.hex[2:]}",
        "cas-store.json",
    ]


def test_multipart_put_streams_parts_and_cleans_up(make_store: MakeStore) -> None:
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART, max_concurrency=2)
    data = os.urandom(3 * MIN_PART + 12345)
    calls = Calls(store)
    ref = store.put(io.BytesIO(data))
    assert ref == hash_bytes(data)
    assert calls.count("UploadPart", 200) == 4
    assert calls.count("CopyObject", 200) == 1
    assert calls.count("PutObject") == 0
    assert store.read_bytes(ref.digest) == data
    assert keys(store, "tmp/") == []
    assert uploads(store) == []
    assert store.fsck() == []


def test_put_of_exactly_the_threshold_is_one_request(make_store: MakeStore) -> None:
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART)
    data = os.urandom(MIN_PART)
    calls = Calls(store)
    assert store.put(io.BytesIO(data)) == hash_bytes(data)
    assert [op for op, _ in calls.seen] == ["PutObject"]


def test_large_copy_goes_part_by_part(make_store: MakeStore) -> None:
    """Beyond `copy_limit` (5 GiB on AWS) the temp object is copied with UploadPartCopy."""
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART, copy_limit=MIN_PART + 1)
    data = os.urandom(2 * MIN_PART + 7)
    calls = Calls(store)
    ref = store.put(io.BytesIO(data))
    assert calls.count("CopyObject") == 0
    assert calls.count("UploadPartCopy", 200) == 3  # parts of copy_limit bytes
    assert store.read_bytes(ref.digest) == data
    assert keys(store, "tmp/") == [] and uploads(store) == []
    # The part-by-part copy is conditional too: a second put is dedup.
    calls.clear()
    assert store.put(io.BytesIO(data)) == ref
    assert calls.count("CompleteMultipartUpload", 412) == 1
    assert uploads(store) == []


def test_dedup_is_the_servers_412(make_store: MakeStore) -> None:
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART)
    calls = Calls(store)
    small = store.put(io.BytesIO(b"twice"))
    assert store.put(io.BytesIO(b"twice")) == small
    # 412, then a HEAD to check the size of what is there (a damaged object is replaced).
    assert calls.seen == [("PutObject", 200), ("PutObject", 412), ("HeadObject", 200)]
    big_data = os.urandom(MIN_PART + 1)
    big = store.put(io.BytesIO(big_data))
    calls.clear()
    assert store.put(io.BytesIO(big_data)) == big
    assert calls.count("CopyObject", 412) == 1
    assert list(store.iterate()) == sorted([small.digest, big.digest])
    assert keys(store, "tmp/") == []


@pytest.mark.parametrize("size", [100, MIN_PART + 1], ids=["small", "multipart"])
def test_put_heals_a_truncated_object(make_store: MakeStore, size: int) -> None:
    """412 on an object of the wrong size: the verified bytes replace the damaged ones."""
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART)
    data = os.urandom(size)
    ref = store.put(io.BytesIO(data))
    key = store.object_key(ref.digest)
    store.client.put_object(Bucket=store.bucket, Key=key, Body=data[:-1])
    assert store.put(io.BytesIO(data)) == ref
    assert store.read_bytes(ref.digest) == data


def test_failed_source_read_leaves_nothing(make_store: MakeStore) -> None:
    """A source that fails mid-stream: the multipart upload is aborted, no key is left."""
    store = make_store(multipart_threshold=MIN_PART, part_size=MIN_PART)

    class Failing(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            if self.sent >= 2 * MIN_PART:
                raise OSError(5, "Input/output error")
            n = min(len(b), 1 << 20)
            b[:n] = b"x" * n
            self.sent += n
            return n

    with pytest.raises(UsageError, match="cannot read the source"):
        store.put(Failing())  # type: ignore[arg-type]
    assert keys(store) == ["cas-store.json"]
    assert uploads(store) == []


def test_concurrent_cli_puts_of_the_same_content(
    s3_server: S3Server, make_store: MakeStore, tmp_path: Path
) -> None:
    """Several `cas put` processes race on one object: one wins, all succeed, no debris."""
    store = make_store()
    big = os.urandom(9 << 20)  # above the default 8 MiB threshold: multipart + copy
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(b"small and shared")
    cmd = [script("cas"), "--store", store.location, "put", "big", "small"]
    env = clean_env(s3_server.env())
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    want = sorted([hash_bytes(big).digest, hash_bytes(b"small and shared").digest])
    assert list(store.iterate()) == want
    assert keys(store, "tmp/") == []
    assert uploads(store) == []
    assert store.read_bytes(want[0]) in (big, b"small and shared")
    assert store.fsck() == []


def test_iterate_pages_in_digest_order(make_store: MakeStore) -> None:
    """More objects than one ListObjectsV2 page (1,000 keys) still list sorted."""
    store = make_store()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        refs = list(pool.map(lambda i: store.put_bytes(i.to_bytes(4, "big")), range(1005)))
    assert list(store.iterate()) == sorted(r.digest for r in refs)


# -- fsck ----------------------------------------------------------------------


def test_fsck_reports_stray_temps_only_after_the_grace(make_store: MakeStore) -> None:
    store = make_store()
    store.client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/tmp/put-old", Body=b"x")
    store.client.create_multipart_upload(Bucket=store.bucket, Key=f"{store.prefix}/tmp/put-mp")
    assert store.fsck() == []  # both are younger than the default grace: live puts
    strict = S3Store(store.bucket, store.prefix, client=store.client, temp_grace=0)
    problems = strict.fsck()
    assert [(p.kind, p.location) for p in problems] == [
        ("stray-temp", "tmp/put-mp"),
        ("stray-temp", "tmp/put-old"),
    ]
    assert "multipart" in problems[0].detail


@pytest.mark.parametrize(("step", "stored"), [("put.temp-written", False), ("put.renamed", True)])
def test_crash_during_put_leaves_only_a_stray_temp(
    s3_server: S3Server, make_store: MakeStore, step: str, stored: bool
) -> None:
    """A writer SIGKILLed mid-put: never a partial object, at most a temp key for fsck."""
    store = make_store()
    data = os.urandom(MIN_PART + 99)
    code = (
        "import io, sys\n"
        "from cas.s3 import S3Store, MIN_PART\n"
        "s = S3Store.from_url(sys.argv[1], multipart_threshold=MIN_PART, part_size=MIN_PART)\n"
        "s.put(io.BytesIO(sys.stdin.buffer.read()))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, store.location],
        input=data,
        capture_output=True,
        env=clean_env({**s3_server.env(), "CAS_CRASH_AT": step}),
        timeout=120,
    )
    assert r.returncode == -9, r.stderr
    ref = hash_bytes(data)
    assert store.has(ref.digest) is stored
    if stored:
        assert store.read_bytes(ref.digest) == data
    strict = S3Store(store.bucket, store.prefix, client=store.client, temp_grace=0)
    problems = strict.fsck()
    assert [p.kind for p in problems] == ["stray-temp"]
    assert problems[0].location.startswith("tmp/put-")
    # A retry succeeds, whatever the crash left.
    assert store.put(io.BytesIO(data)) == ref
    assert store.read_bytes(ref.digest) == data


def test_fsck_finds_misplaced_and_mismatched_and_quarantines(make_store: MakeStore) -> None:
    store = make_store()
    a = store.put_bytes(b"object a")
    b = store.put_bytes(b"object b")
    c = store.put_bytes(b"object c")
    put = store.client.put_object
    put(Bucket=store.bucket, Key=store.object_key(a.digest), Body=b"object b")  # b's bytes
    put(Bucket=store.bucket, Key=store.object_key(c.digest), Body=b"object ?")
    for junk in ["notes.txt", "blake3/ab/short", "blake3/zz/" + "0" * 62, "sha256/00/11"]:
        put(Bucket=store.bucket, Key=f"{store.prefix}/{junk}", Body=b"junk")
    problems = store.fsck()
    found = [(p.kind, p.location, p.digest) for p in problems]
    assert found == sorted(
        [
            ("mismatch", f"blake3/{a.digest.hex[:2]}/{a.digest.hex[2:]}", str(a.digest)),
            ("mismatch", f"blake3/{c.digest.hex[:2]}/{c.digest.hex[2:]}", str(c.digest)),
            ("misplaced", "blake3/ab/short", None),
            ("misplaced", "blake3/zz/" + "0" * 62, None),
            ("misplaced", "notes.txt", None),
            ("misplaced", "sha256/00/11", None),
        ]
    )
    by_digest = {p.digest: p.detail for p in problems}
    assert f"holds the bytes of {b.digest}" in by_digest[str(a.digest)]
    assert "another object" not in by_digest[str(c.digest)]

    assert store.fsck(quarantine=True) == problems
    assert store.fsck() == []
    assert list(store.iterate()) == [b.digest]
    quarantined = keys(store, "quarantine/")
    assert sorted(quarantined) == sorted(f"quarantine/{p.location}" for p in problems)
    # Quarantine never overwrites what an earlier run set aside.
    put(Bucket=store.bucket, Key=f"{store.prefix}/notes.txt", Body=b"junk again")
    store.fsck(quarantine=True)
    assert "quarantine/notes.txt.1" in keys(store, "quarantine/")


# -- opening stores, errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("s3://bucket", ("bucket", "")),
        ("s3://bucket/", ("bucket", "")),
        ("s3://bucket/a/b/", ("bucket", "a/b")),
        ("s3://my.bucket-1/p", ("my.bucket-1", "p")),
    ],
)
def test_parse_s3_url(url: str, want: tuple[str, str]) -> None:
    assert parse_s3_url(url) == want


@pytest.mark.parametrize(
    "url",
    ["s3://", "s3://B/p", "s3://ab/p", "s3://-bucket/p", "s3://bucket/a//b", "s3://bucket/../x"],
)
def test_bad_s3_urls_are_usage_errors(url: str) -> None:
    with pytest.raises(UsageError):
        parse_s3_url(url)


def test_init_is_idempotent_and_shares_a_bucket(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket(create=False)
    a = S3Store.init(f"s3://{bucket}/a", client=s3_server.client())
    ref = a.put_bytes(b"keep me")
    again = S3Store.init(f"s3://{bucket}/a", client=s3_server.client())
    assert again.has(ref.digest)
    b = S3Store.init(f"s3://{bucket}/b", client=s3_server.client())
    assert list(b.iterate()) == []
    assert b.fsck() == [] and a.fsck() == []


def test_open_missing_store_or_bucket(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    with pytest.raises(StoreNotFound, match="no cas store here"):
        S3Store.existing(f"s3://{bucket}/nothing", client=s3_server.client())
    with pytest.raises(StoreNotFound, match="no cas store here"):
        S3Store.existing(f"s3://{s3_server.new_bucket(create=False)}/p", client=s3_server.client())


def test_wrong_credentials_are_access_denied(s3_server: S3Server) -> None:
    bucket = s3_server.new_bucket()
    S3Store.init(f"s3://{bucket}/p", client=s3_server.client())
    bad = s3_server.client(secret_key="wrong" * 8)
    with pytest.raises(S3AccessDenied, match="refused the credentials") as e:
        S3Store.existing(f"s3://{bucket}/p", client=bad)
    assert e.value.exit_code == EXIT_USAGE
    assert "\n" not in str(e.value)


def test_fake_server_error_maps_to_one_line_store_error(s3_server: S3Server) -> None:
    """A fake (botocore Stubber): a 500 that a real server will not produce on demand."""
    from botocore.stub import Stubber

    store = S3Store("bucket", "p", client=s3_server.client())
    with Stubber(store.client) as stub:
        stub.add_client_error(
            "head_object",
            service_error_code="InternalError",
            service_message="We encountered an internal error.",
            http_status_code=500,
        )
        with pytest.raises(S3StoreError) as e:
            store.size(hash_bytes(b"x").digest)
    assert e.value.exit_code == EXIT_INTERNAL
    assert str(e.value) == (
        f"s3://bucket/p: cannot stat object {hash_bytes(b'x').digest}: "
        "InternalError: We encountered an internal error."
    )


# -- the real console script -----------------------------------------------------


def test_cli_round_trip(s3_server: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3_server.new_bucket(create=False)}/builds/cas"
    env = s3_server.env()

    def cas(*args: str, **kw: Any) -> subprocess.CompletedProcess[bytes]:
        return run_cli("cas", "--store", url, *args, cwd=tmp_path, env=env, **kw)

    r = run_cli("cas", "init", url, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"initialized store {url}\n"
    data = os.urandom((9 << 20) + 5)
    (tmp_path / "blob").write_bytes(data)
    r = cas("put", "blob", "-", input=b"from stdin")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines == [
        f"{hash_bytes(data).digest}  {len(data)}  blob",
        f"{hash_bytes(b'from stdin').digest}  10  -",
    ]
    digest = str(hash_bytes(data).digest)
    assert cas("cat", digest).stdout == data
    assert cas("get", digest, "-o", "copy").returncode == 0
    assert (tmp_path / "copy").read_bytes() == data
    assert cas("stat", digest).stdout.decode() == f"{digest}  {len(data)}\n"
    assert len(cas("ls").stdout.decode().splitlines()) == 2
    r = cas("fsck")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == "fsck: 2 objects checked, clean\n"
    # The same store through the environment instead of --store.
    r = run_cli("cas", "ls", cwd=tmp_path, env={**env, "CAS_STORE": url})
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2


def test_cli_corrupt_object_exits_3(
    s3_server: S3Server, make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store()
    ref = store.put_bytes(b"good bytes")
    store.client.put_object(Bucket=store.bucket, Key=store.object_key(ref.digest), Body=b"bad!")
    env = s3_server.env()
    r = run_cli("cas", "--store", store.location, "cat", str(ref.digest), cwd=tmp_path, env=env)
    assert r.returncode == 3
    assert r.stdout == b""
    r = run_cli("cas", "--store", store.location, "fsck", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 3
    assert b'"mismatch"' in r.stdout


def one_line_error(r: subprocess.CompletedProcess[bytes]) -> str:
    err = r.stderr.decode()
    assert err.count("\n") == 1 and err.startswith("cas: error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("command", [["ls"], ["put", "-"], ["fsck"]])
def test_cli_bad_credentials_is_one_line_exit_2(
    s3_server: S3Server, make_store: MakeStore, tmp_path: Path, command: list[str]
) -> None:
    store = make_store()
    env = s3_server.env(AWS_SECRET_ACCESS_KEY="not-the-secret")
    r = run_cli("cas", "--store", store.location, *command, cwd=tmp_path, env=env, input=b"x")
    assert r.returncode == EXIT_USAGE
    err = one_line_error(r)
    assert "refused the credentials" in err


def test_cli_missing_credentials_is_one_line_exit_2(
    s3_server: S3Server, make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store()
    env = {k: v for k, v in clean_env(s3_server.env()).items() if not k.startswith("AWS_ACCESS")}
    env.pop("AWS_SECRET_ACCESS_KEY")
    r = subprocess.run(
        [script("cas"), "--store", store.location, "ls"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert r.returncode == EXIT_USAGE
    assert "credentials" in one_line_error(r)


def test_cli_unreachable_endpoint_is_one_line_exit_1(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = S3Server(f"http://127.0.0.1:{port}", "k", "s").env()
    r = run_cli("cas", "--store", "s3://bucket/p", "ls", cwd=tmp_path, env=env)
    assert r.returncode == EXIT_INTERNAL
    assert "cannot reach the S3 endpoint" in one_line_error(r)


def test_cli_missing_store_is_one_line_exit_2(s3_server: S3Server, tmp_path: Path) -> None:
    url = f"s3://{s3_server.new_bucket()}/none"
    r = run_cli("cas", "--store", url, "ls", cwd=tmp_path, env=s3_server.env())
    assert r.returncode == EXIT_USAGE
    assert f"no cas store here (create one with 'cas init {url}')" in one_line_error(r)


def test_cas_without_s3_does_not_import_boto3() -> None:
    code = "import sys, cas.cli, cas.fsck; sys.exit('boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
