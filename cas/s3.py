"""The S3 backend: objects in a bucket of any S3-compatible server.

Layout under `s3://bucket/prefix`::

    <prefix>/cas-store.json                    marker: {"schema": "cas-store/v1"}
    <prefix>/blake3/<2 hex>/<62 hex>           objects
    <prefix>/tmp/put-<random>                  in-flight multipart ingests
    <prefix>/quarantine/...                    what `fsck --quarantine` set aside

An object's name is its digest, which is known only once every byte has been read,
and an S3 key is fixed when its upload starts. A put therefore reads the source once,
hashing the bytes it uploads, and takes one of two paths:

* Small (up to `multipart_threshold` bytes): the bytes are buffered while hashed,
  then sent in one `PutObject` straight to the final key with `IfNoneMatch='*'`.
  No temp key: one request, nothing to clean up.
* Large: a multipart upload to a temp key `<prefix>/tmp/put-<random>`, several parts
  in flight at once, each part hashed as it is read. Once complete, a server-side
  copy places it under the final key, conditional on `IfNoneMatch='*'` (beyond
  `copy_limit`, 5 GiB on AWS, the copy is itself a multipart `UploadPartCopy` whose
  completion carries the condition), then the temp key is deleted.

Either way the final key is written only by a request that carries complete bytes,
so a partial object never appears under a name. A 412 (PreconditionFailed) means the
object is already there: dedup, which is success. Only if the existing object has a
different size (it was damaged) is it overwritten with the bytes just verified.

`put_many` runs `jobs` such puts at once, in threads (they wait on the network, and a
boto3 client is thread-safe), and hands out their references in input order, each
once its request has returned. It changes nothing in how one object is written.

A crash leaves at most an unfinished multipart upload or a temp key. S3 has no lock a
dead writer releases, so fsck calls one stray when it is older than `temp_grace`
(measured against the server's clock). Reads stream `GetObject` and are verified by
the base class, like every backend.

Endpoint, credentials and region come from the standard AWS environment and config
files (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
`AWS_PROFILE`, ...). Failures map onto the `cas` error tree: a missing object is
`ObjectMissing`, rejected or missing credentials `S3AccessDenied` (exit 2), an
unreachable endpoint or a failing server `S3StoreError` (exit 1).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import email.utils
import io
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
import botocore.exceptions
from botocore.config import Config

from cas._crash import crashpoint
from cas.backend import CHUNK, ObjectStore, Problem, verified_chunks
from cas.digest import ALGORITHM, Digest, ObjectRef, hasher
from cas.errors import (
    EXIT_USAGE,
    CasError,
    DigestMismatch,
    InvalidDigest,
    ObjectMissing,
    StoreNotFound,
    UsageError,
)
from cas.fsutil import open_source
from cas.local import MARKER, MARKER_DATA, _read_upto

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3AccessDenied", "S3Store", "S3StoreError", "S3Unreachable", "parse_s3_url"]

MiB = 1 << 20
#: The smallest part S3 accepts, but for the last one.
MIN_PART = 5 * MiB
#: The most parts one multipart upload may have.
MAX_PARTS = 10_000
#: The largest object a single CopyObject may copy on AWS.
COPY_LIMIT = 5 << 30
#: Objects `put_many` uploads at once by default: as many requests as `aws s3 cp` has
#: in flight (its `max_concurrent_requests`). Each upload holds up to
#: `multipart_threshold` bytes, and the batch at most as many parts again.
PUT_JOBS = 10
#: The most `put_many` uploads at once: with as many parts of large objects in
#: flight, the connections `make_client` keeps open.
MAX_PUT_JOBS = 32

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_HEX2 = re.compile(r"[0-9a-f]{2}")
_MISSING = {"404", "NoSuchKey", "NotFound"}
_DENIED = {
    "403",
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "AuthorizationHeaderMalformed",
}
_CREDENTIALS = (
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    botocore.exceptions.CredentialRetrievalError,
    botocore.exceptions.ProfileNotFound,
)


class S3StoreError(CasError):
    """The S3 server could not be reached, or refused or failed a request."""


class S3Unreachable(S3StoreError):
    """The S3 endpoint could not be reached at all: no answer about any object."""


class S3AccessDenied(S3StoreError):
    """The credentials are missing, or the server rejected them."""

    exit_code = EXIT_USAGE


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/prefix` into the bucket and the prefix (without slashes).

    Raises:
        UsageError: for a malformed bucket name or prefix.
    """
    if not url.startswith("s3://"):
        raise UsageError(f"{url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(
            f"{url}: invalid bucket name {bucket!r} "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    prefix = prefix.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise UsageError(f"{url}: invalid prefix {prefix!r}")
    return bucket, prefix


def make_client(max_pool_connections: int = 64) -> S3Client:
    """An S3 client configured from the standard AWS environment and config files.

    Unless the environment sets its own retry policy, a dead endpoint fails after a
    few quick retries rather than after a long back-off.
    """
    retries: Any = None
    if not (os.environ.get("AWS_MAX_ATTEMPTS") or os.environ.get("AWS_RETRY_MODE")):
        retries = {"mode": "standard", "max_attempts": 3}
    config = Config(
        max_pool_connections=max_pool_connections,
        retries=retries,
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra="cas-promote",
    )
    try:
        return boto3.session.Session().client("s3", config=config)
    except botocore.exceptions.BotoCoreError as e:
        raise S3AccessDenied(f"cannot configure the S3 client: {e}") from None
    except ValueError as e:  # such as a malformed AWS_ENDPOINT_URL
        raise UsageError(f"cannot configure the S3 client: {e}") from None


def _code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def _status(e: botocore.exceptions.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _precondition_failed(e: botocore.exceptions.ClientError) -> bool:
    return _code(e) == "PreconditionFailed" or _status(e) == 412


class S3Store(ObjectStore):
    """A content-addressed store under `s3://bucket/prefix`."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        multipart_threshold: int = 8 * MiB,
        part_size: int = 8 * MiB,
        copy_limit: int = COPY_LIMIT,
        max_concurrency: int = 4,
        temp_grace: float = 3600.0,
    ) -> None:
        """A handle on the store; no request is made until it is used.

        Args:
            bucket: the bucket.
            prefix: the key prefix of the store inside the bucket (may be empty).
            client: a boto3 S3 client (default: from the AWS environment and config).
            multipart_threshold: larger sources go through a multipart upload.
            part_size: the size of each part (the last may be smaller). It doubles
                every 1,000 parts, so a stream of unknown length never runs out.
            copy_limit: larger temp objects are copied into place part by part.
            max_concurrency: parts uploaded (or objects re-hashed by fsck) at once.
            temp_grace: how old (seconds) a temp key must be before fsck calls it stray.

        Raises:
            UsageError: for a threshold or part size under S3's 5 MiB minimum.
        """
        if multipart_threshold < MIN_PART or part_size < MIN_PART:
            raise UsageError(f"multipart threshold and part size must be at least {MIN_PART}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.location = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client: S3Client = client if client is not None else make_client()
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.copy_limit = copy_limit
        self.max_concurrency = max(1, max_concurrency)
        self.temp_grace = temp_grace
        self._root = f"{self.prefix}/" if self.prefix else ""

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> S3Store:
        bucket, prefix = parse_s3_url(url)
        return cls(bucket, prefix, **kw)

    @classmethod
    def existing(cls, url: str, **kw: Any) -> S3Store:
        """Open an existing store.

        Raises:
            StoreNotFound: when the bucket or the store's marker is missing.
            S3AccessDenied, S3StoreError: when the server cannot be used.
        """
        store = cls.from_url(url, **kw)
        with store._errors("open the store"):
            if store._existing_size(store._key(MARKER)) is None:
                raise StoreNotFound(
                    f"{store.location}: no cas store here "
                    f"(create one with 'cas init {store.location}')"
                )
        return store

    @classmethod
    def init(cls, url: str, **kw: Any) -> S3Store:
        """Create a store, and its bucket when missing (an existing one is kept)."""
        store = cls.from_url(url, **kw)
        with store._errors("create the bucket"):
            try:
                store.client.head_bucket(Bucket=store.bucket)
            except botocore.exceptions.ClientError as e:
                if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                store._create_bucket()
        with store._errors("write the store marker"):
            try:
                store.client.put_object(
                    Bucket=store.bucket, Key=store._key(MARKER), Body=MARKER_DATA, IfNoneMatch="*"
                )
            except botocore.exceptions.ClientError as e:
                if not _precondition_failed(e):
                    raise
        return store

    def _create_bucket(self) -> None:
        region = self.client.meta.region_name
        try:
            if region and region != "us-east-1":
                self.client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
                )
            else:
                self.client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as e:
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- errors --------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self, what: str, digest: Digest | None = None) -> Iterator[None]:
        """Turn boto3's exceptions into the `cas` error tree, with one-line messages."""
        try:
            yield
        except botocore.exceptions.ClientError as e:
            raise self._client_error(what, e, digest) from None
        except _CREDENTIALS as e:
            raise S3AccessDenied(f"{self.location}: cannot {what}: {e}") from None
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
        ):
            raise S3Unreachable(
                f"{self.location}: cannot {what}: cannot reach the S3 endpoint "
                f"{self.client.meta.endpoint_url}"
            ) from None
        except botocore.exceptions.BotoCoreError as e:
            raise S3StoreError(f"{self.location}: cannot {what}: {e}") from None

    def _client_error(
        self, what: str, e: botocore.exceptions.ClientError, digest: Digest | None
    ) -> CasError:
        code = _code(e)
        message = str(e.response.get("Error", {}).get("Message", "")) or code
        if code in _MISSING and digest is not None:
            return ObjectMissing(digest)
        if code in _MISSING:
            return S3StoreError(f"{self.location}: cannot {what}: not found")
        if code == "NoSuchBucket":
            return StoreNotFound(
                f"{self.location}: bucket {self.bucket!r} does not exist "
                f"(create it with 'cas init {self.location}')"
            )
        if code in _DENIED:
            return S3AccessDenied(
                f"{self.location}: cannot {what}: the server refused the credentials "
                f"({code}: {message})"
            )
        return S3StoreError(f"{self.location}: cannot {what}: {code}: {message}")

    # -- layout --------------------------------------------------------------

    def _key(self, rel: str) -> str:
        return self._root + rel

    def _rel(self, key: str) -> str:
        return key[len(self._root) :]

    def object_key(self, digest: Digest) -> str:
        return self._key(f"{digest.algorithm}/{digest.hex[:2]}/{digest.hex[2:]}")

    # -- primitives ----------------------------------------------------------

    def has(self, digest: Digest) -> bool:
        try:
            self.size(digest)
        except ObjectMissing:
            return False
        return True

    def size(self, digest: Digest) -> int:
        with self._errors(f"stat object {digest}", digest):
            head = self.client.head_object(Bucket=self.bucket, Key=self.object_key(digest))
        return int(head["ContentLength"])

    def put_bytes(self, data: bytes) -> ObjectRef:
        # The conditional PutObject already answers "is it there?": skip the HEADs.
        return self.put(io.BytesIO(data))

    def put(self, source: BinaryIO) -> ObjectRef:
        return self._put(source, CHUNK)

    def put_file(self, path: Path) -> ObjectRef:
        return self._put_file(path)

    def put_many(
        self,
        sources: Iterable[str | os.PathLike[str] | BinaryIO],
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, CasError], None] | None = None,
        jobs: int | None = None,
    ) -> Iterator[ObjectRef]:
        """See `ObjectStore.put_many`: `jobs` objects (default `PUT_JOBS`, at most
        `MAX_PUT_JOBS`) are uploaded at once, each exactly as `put` uploads it; the
        references still come in input order, each once its object is stored. Paths
        are read by the uploading threads; a stream (stdin) is read and uploaded here,
        in its turn, so that two of them never share a read. The parts of large objects
        count against the same bound: at most `jobs` parts are in flight in the batch.

        A failure of the store (any error but a `UsageError`) ends the batch: no further
        source is started, those in flight finish, then it is raised. With `on_error`, it
        is first passed there with the index of its source and of each source it kept
        from starting, so that every reference yielded keeps its index, and the sources
        after it whose uploads finished are still yielded: what is reported is exactly
        what was stored. Without `on_error`, any failure ends the batch so, and only the
        references before it are yielded.
        """
        jobs = max(1, min(jobs or PUT_JOBS, MAX_PUT_JOBS))
        slots = threading.BoundedSemaphore(jobs)
        window: collections.deque[tuple[int, concurrent.futures.Future[ObjectRef]]]
        window = collections.deque()
        failure: CasError | None = None
        pool = concurrent.futures.ThreadPoolExecutor(jobs, thread_name_prefix="cas-put")

        def settle() -> ObjectRef | None:
            """The reference of the oldest source in flight, or None when it failed."""
            nonlocal failure
            i, future = window.popleft()
            try:
                ref = future.result() if not future.cancelled() else None
            except CasError as e:
                if failure is None and (on_error is None or not isinstance(e, UsageError)):
                    failure = e
                    for _, waiting in window:
                        waiting.cancel()  # a cancelled source is not started
                if on_error is not None:
                    on_error(i, e)
                return None
            if ref is None:  # cancelled after the failure
                if on_error is not None and failure is not None:
                    on_error(i, failure)
                return None
            if failure is not None and on_error is None:
                return None
            if progress is not None:
                progress(ref.size)
            return ref

        try:
            for i, source in enumerate(sources):
                if failure is not None:
                    break
                if isinstance(source, (str, os.PathLike)):
                    future = pool.submit(self._put_file, source, slots)
                else:
                    future = concurrent.futures.Future()
                    try:
                        future.set_result(self._put(source, CHUNK, slots))
                    except CasError as e:
                        future.set_exception(e)
                window.append((i, future))
                # Keep every thread busy; hand out each reference as soon as its turn comes.
                while window and (len(window) > 2 * jobs or window[0][1].done()):
                    if (ref := settle()) is not None:
                        yield ref
            while window:
                if (ref := settle()) is not None:
                    yield ref
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if failure is not None:
            raise failure

    def _put_file(
        self, path: str | os.PathLike[str], slots: threading.Semaphore | None = None
    ) -> ObjectRef:
        """`put_file`; see `_put` for `slots`."""
        fd, st = open_source(path)
        with os.fdopen(fd, "rb", buffering=0) as f:
            # A regular file's size is known: read it in one call, into a buffer its size.
            return self._put(f, st.st_size + 1 if stat.S_ISREG(st.st_mode) else CHUNK, slots)

    def _put(
        self, source: BinaryIO, hint: int, slots: threading.Semaphore | None = None
    ) -> ObjectRef:
        """`put`, asking the source first for `hint` bytes; a multipart upload takes one
        of `slots` (when given) for each part it has in flight."""
        head = _read_upto(source, self.multipart_threshold + 1, hint)
        if len(head) <= self.multipart_threshold:
            h = hasher()
            h.update(head)
            ref = ObjectRef(Digest(ALGORITHM, h.hexdigest()), len(head))
            self._put_small(ref, head)
            crashpoint("put.renamed")
            return ref
        temp = self._key(f"tmp/put-{uuid.uuid4().hex}")
        try:
            ref = self._upload_parts(temp, head, source, slots)
            crashpoint("put.temp-written")
            self._place(temp, ref)
            crashpoint("put.renamed")
            return ref
        finally:
            # Best effort: a temp left behind is reported by fsck, never served.
            with contextlib.suppress(CasError), self._errors("delete a temp key"):
                self.client.delete_object(Bucket=self.bucket, Key=temp)

    def _put_small(self, ref: ObjectRef, data: bytes) -> None:
        key = self.object_key(ref.digest)
        with self._errors(f"store object {ref.digest}"):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, IfNoneMatch="*")
                return
            except botocore.exceptions.ClientError as e:
                if not _precondition_failed(e):
                    raise
            if self._existing_size(key) != ref.size:
                # A damaged object holds the name: replace it with verified bytes.
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def _existing_size(self, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except botocore.exceptions.ClientError as e:
            if _code(e) in _MISSING:
                return None
            raise

    def _upload_parts(
        self, temp: str, head: bytes, source: BinaryIO, slots: threading.Semaphore | None
    ) -> ObjectRef:
        """Multipart-upload `head` then the rest of `source` to `temp`, hashing it all;
        each part in flight holds one of `slots`, when given."""
        h = hasher()
        size = 0
        with self._errors("start a multipart upload"):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=temp)[
                "UploadId"
            ]
        pool = concurrent.futures.ThreadPoolExecutor(self.max_concurrency)
        pending: list[concurrent.futures.Future[dict[str, Any]]] = []
        parts: list[dict[str, Any]] = []
        try:
            number = 1
            block = head
            if len(block) < self.part_size:
                block += _read_upto(source, self.part_size - len(block), self.part_size)
            while block:
                h.update(block)
                size += len(block)
                if len(pending) >= self.max_concurrency:
                    parts.append(pending.pop(0).result())
                if slots is not None:
                    slots.acquire()
                pending.append(pool.submit(self._upload_part, temp, upload_id, number, block))
                if slots is not None:  # also when cancelled: a slot is never lost
                    pending[-1].add_done_callback(lambda _: slots.release())
                number += 1
                size_of_part = self.part_size << ((number - 1) // 1000)
                block = _read_upto(source, size_of_part, size_of_part)
                if block and number > MAX_PARTS:
                    raise UsageError(f"the source is too large for one upload ({size}+ bytes)")
            parts.extend(f.result() for f in pending)
            with self._errors("complete a multipart upload"):
                self._complete_multipart(temp, upload_id, parts)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            self._abort_multipart(temp, upload_id)
            raise
        pool.shutdown()
        return ObjectRef(Digest(ALGORITHM, h.hexdigest()), size)

    def _upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> dict[str, Any]:
        with self._errors(f"upload part {number}"):
            r = self.client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
            )
        return {"ETag": r["ETag"], "PartNumber": number}

    def _place(self, temp: str, ref: ObjectRef) -> None:
        """Copy the complete temp object to its final name, unless it is there already."""
        key = self.object_key(ref.digest)
        with self._errors(f"store object {ref.digest}"):
            if self._copy(temp, key, ref.size, if_none_match=True):
                return
            if self._existing_size(key) != ref.size:
                self._copy(temp, key, ref.size, if_none_match=False)

    def _copy(self, src: str, dest: str, size: int, if_none_match: bool) -> bool:
        """Server-side copy `src` to `dest`. False when `if_none_match` and `dest` exists.

        Raises botocore's exceptions: callers map them.
        """
        cond: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
        source: Any = {"Bucket": self.bucket, "Key": src}
        try:
            if size <= self.copy_limit:
                self.client.copy_object(Bucket=self.bucket, Key=dest, CopySource=source, **cond)
            else:
                self._copy_parts(source, dest, size, cond)
        except botocore.exceptions.ClientError as e:
            if if_none_match and _precondition_failed(e):
                return False
            raise
        return True

    def _copy_parts(self, source: Any, dest: str, size: int, cond: dict[str, Any]) -> None:
        part = max(self.part_size, -(-size // MAX_PARTS), min(self.copy_limit, 512 * MiB))
        upload_id = self.client.create_multipart_upload(Bucket=self.bucket, Key=dest)["UploadId"]
        try:

            def copy_part(item: tuple[int, int]) -> dict[str, Any]:
                number, start = item
                end = min(start + part, size) - 1
                r = self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=dest,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceRange=f"bytes={start}-{end}",
                )
                return {"ETag": r["CopyPartResult"]["ETag"], "PartNumber": number}

            items = list(enumerate(range(0, size, part), start=1))
            with concurrent.futures.ThreadPoolExecutor(self.max_concurrency) as pool:
                parts = list(pool.map(copy_part, items))
            self._complete_multipart(dest, upload_id, parts, **cond)
        except BaseException:
            self._abort_multipart(dest, upload_id)
            raise

    def _complete_multipart(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], **cond: Any
    ) -> None:
        """Complete an upload of `parts`, on the conditions `cond`.

        Raises botocore's exceptions: callers map them.
        """
        self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            **cond,
        )

    def _abort_multipart(self, key: str, upload_id: str) -> None:
        """Best effort: an upload left unfinished is reported by fsck, never served."""
        with contextlib.suppress(
            botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError
        ):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def raw_chunks(self, digest: Digest) -> Iterator[bytes]:
        with self._errors(f"read object {digest}", digest):
            r = self.client.get_object(Bucket=self.bucket, Key=self.object_key(digest))
        return self._chunks_of(r["Body"], digest)

    def _chunks_of(self, body: Any, digest: Digest) -> Iterator[bytes]:
        try:
            with self._errors(f"read object {digest}", digest):
                yield from body.iter_chunks(CHUNK)
        finally:
            body.close()

    def iterate(self) -> Iterator[Digest]:
        # S3 lists keys in byte order, which for `<2 hex>/<62 hex>` is digest order.
        for key, _ in self._list(f"{ALGORITHM}/"):
            digest = self._digest_of(self._rel(key))
            if digest is not None:
                yield digest

    def _digest_of(self, rel: str) -> Digest | None:
        """The digest an object's relative key names, or None if it names none."""
        parts = rel.split("/")
        if len(parts) != 3 or parts[0] != ALGORITHM or not _HEX2.fullmatch(parts[1]):
            return None
        try:
            return Digest(ALGORITHM, parts[1] + parts[2])
        except InvalidDigest:
            return None

    def _list(self, rel_prefix: str = "") -> Iterator[tuple[str, datetime]]:
        """Every key under the store's prefix + `rel_prefix`, in order, with its mtime."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors("list the store"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(rel_prefix)):
                self._server_now = _server_time(page)
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj["LastModified"]

    def delete(self, digest: Digest) -> None:
        key = self.object_key(digest)
        self.size(digest)  # S3 deletes a missing key silently; the contract says raise
        with self._errors(f"delete object {digest}", digest):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    # -- fsck ----------------------------------------------------------------

    _server_now: float | None = None

    def stray_temps(self) -> list[Problem]:
        """Temp keys and unfinished multipart uploads older than `temp_grace`."""
        found = []
        for key, mtime in self._list("tmp/"):
            if self._is_old(mtime):
                found.append(
                    Problem("stray-temp", self._rel(key), "temp key of an interrupted put")
                )
        paginator = self.client.get_paginator("list_multipart_uploads")
        with self._errors("list multipart uploads"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key("tmp/")):
                self._server_now = _server_time(page)
                for up in page.get("Uploads", []):
                    if self._is_old(up["Initiated"]):
                        found.append(
                            Problem(
                                "stray-temp",
                                self._rel(up["Key"]),
                                "unfinished multipart upload of an interrupted put",
                            )
                        )
        return sorted(found)

    def _is_old(self, mtime: datetime) -> bool:
        now = self._server_now if self._server_now is not None else time.time()
        return now - mtime.timestamp() >= self.temp_grace

    def fsck(
        self,
        quarantine: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Problem]:
        problems: list[Problem] = self.stray_temps()
        candidates: list[tuple[str, Digest]] = []
        for key, _ in self._list():
            rel = self._rel(key)
            top = rel.split("/", 1)[0]
            if rel == MARKER or top in ("tmp", "quarantine"):
                continue
            digest = self._digest_of(rel)
            if digest is not None:
                candidates.append((rel, digest))
            elif top == ALGORITHM and rel.count("/") == 2 and _HEX2.fullmatch(rel.split("/")[1]):
                problems.append(Problem("misplaced", rel, "not a valid object name"))
            else:
                problems.append(Problem("misplaced", rel, "key outside the object layout"))
        workers = max(self.max_concurrency, 2 * (os.cpu_count() or 1))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            for done, found in enumerate(pool.map(self._check_object, candidates), 1):
                problems.extend(found)
                if progress is not None:
                    progress(done, len(candidates))
        problems.sort()
        if quarantine:
            self._set_aside(problems)
        return problems

    def _check_object(self, item: tuple[str, Digest]) -> list[Problem]:
        rel, digest = item
        try:
            for _ in verified_chunks(self.raw_chunks(digest), digest):
                pass
        except ObjectMissing:
            return []  # deleted by gc while we looked
        except S3Unreachable:
            raise  # the server is gone, not this object: fsck fails (exit 1), no report
        except DigestMismatch as e:
            if isinstance(e.got, Digest) and self.has(e.got):
                detail = f"holds the bytes of {e.got} ({e.size} bytes), another object"
            else:
                detail = f"bytes hash to {e.got} ({e.size} bytes)"
            return [Problem("mismatch", rel, detail, str(digest))]
        except S3StoreError as e:
            return [Problem("unreadable", rel, str(e), str(digest))]
        return []

    def _set_aside(self, problems: list[Problem]) -> None:
        """Copy bad objects under `quarantine/` (never overwriting), then delete them."""
        for p in problems:
            if p.kind not in ("mismatch", "misplaced"):
                continue
            src = self._key(p.location)
            with self._errors(f"quarantine {p.location}"):
                size = self._existing_size(src)
                if size is None:
                    continue
                n = 0
                dest = self._key(f"quarantine/{p.location}")
                while not self._copy(src, dest, size, if_none_match=True):
                    n += 1
                    dest = self._key(f"quarantine/{p.location}.{n}")
                self.client.delete_object(Bucket=self.bucket, Key=src)


def _server_time(page: Any) -> float | None:
    """The server's clock, from a response's Date header, so skew cannot fake an age."""
    date = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None
