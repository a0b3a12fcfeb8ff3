"""Fixtures of the history, revert and CI-gate tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Flow
from servers_pg import PgServer, postgresql


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    """A fresh symlink-mode workspace."""
    return Flow.init(tmp_path / "ws")


@pytest.fixture
def copy_flow(tmp_path: Path) -> Flow:
    """A fresh copy-mode workspace (a tree that lives in git)."""
    return Flow.init(tmp_path / "ws", "--mode", "copy")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL for the session; a failed start fails the tests."""
    with postgresql() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, migrated database."""
    from promote.ledger.pg import migrate

    url = pg_server.new_database()
    migrate(url)
    return url
