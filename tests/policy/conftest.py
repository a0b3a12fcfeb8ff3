"""Fixtures of the policy tests: the `opa` stand-in (real OPA, embedded)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import opa_standin


@pytest.fixture(scope="session")
def opa_standin_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """An `opa` executable (a stand-in: eval and version) running real OPA v1.20.2."""
    return opa_standin.install(str(tmp_path_factory.mktemp("opa-standin")))
