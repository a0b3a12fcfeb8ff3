"""Fixtures of the history, revert and CI-gate tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import Flow


@pytest.fixture
def flow(tmp_path: Path) -> Flow:
    """A fresh symlink-mode workspace."""
    return Flow.init(tmp_path / "ws")


@pytest.fixture
def copy_flow(tmp_path: Path) -> Flow:
    """A fresh copy-mode workspace (a tree that lives in git)."""
    return Flow.init(tmp_path / "ws", "--mode", "copy")
