"""Fixtures of the remote-backend tests: a real PostgreSQL for the session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from servers_pg import PgServer, postgresql

from promote.ledger.pg import migrate


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """initdb + pg_ctl on a free loopback port; a failed start fails the tests."""
    with postgresql() as server:
        yield server


@pytest.fixture
def pg_empty_url(pg_server: PgServer) -> str:
    """A fresh database without the promote schema."""
    return pg_server.new_database()


@pytest.fixture
def pg_url(pg_empty_url: str) -> str:
    """A fresh database, migrated."""
    migrate(pg_empty_url)
    return pg_empty_url
