"""Fixtures of the web view's tests: one workspace with three real promotions per
module (tests must not change it), and clients of the application over it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import Flow
from web_site import Served, build_site, client_for


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """A workspace with three promotions; tests must not change it."""
    return build_site(tmp_path_factory.mktemp("web") / "ws")


@pytest.fixture(scope="module")
def client(site: Flow) -> Any:
    return client_for(site.root)


@pytest.fixture(scope="module")
def objects_client(site: Flow) -> Any:
    return client_for(site.root, serve_objects=True)


@pytest.fixture
def served(site: Flow) -> Iterator[Served]:
    """`promote serve --serve-objects` over `site`, on a free loopback port."""
    s = Served(site.root, "--serve-objects")
    try:
        yield s
    finally:
        if s.proc.poll() is None:
            s.stop()
