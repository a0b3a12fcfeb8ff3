"""Shared fixtures: real stores in temp dirs, the real console scripts, and the real
servers (SeaweedFS, PostgreSQL), one of each per session."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import run_cli
from servers import S3Server, seaweedfs
from servers_pg import PgServer, postgresql

from cas.local import LocalStore

Cli = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore.init(tmp_path / "store")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A fresh directory holding an initialised `.cas` store."""
    work = tmp_path / "work"
    work.mkdir()
    assert run_cli("cas", "init", cwd=work).returncode == 0
    return work


@pytest.fixture
def cas(work: Path) -> Cli:
    """`cas ARGS`, the real console script, run in `work`."""

    def call(*args: str | os.PathLike[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        return run_cli("cas", *args, cwd=work, **kw)  # type: ignore[arg-type]

    return call


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server for the whole session; a failed start fails the tests."""
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL for the whole session (initdb + pg_ctl on a free loopback port);
    a failed start fails the tests."""
    with postgresql() as server:
        yield server


@pytest.fixture
def pg_empty_url(pg_server: PgServer) -> str:
    """A fresh database on the session's server, without the promote schema."""
    return pg_server.new_database()


@pytest.fixture
def pg_url(pg_empty_url: str) -> str:
    """A fresh database, migrated."""
    from promote.ledger.pg import migrate

    migrate(pg_empty_url)
    return pg_empty_url
