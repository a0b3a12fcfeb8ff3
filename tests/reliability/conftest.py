"""Fixtures of the reliability suite, and the summary of figures it prints at the end."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability.checker import TALLY
from reliability.scenario import Zygote, copy_workspace, init_template

Make = Callable[..., Path]

CATEGORIES = [
    ("crash", "kills injected"),
    ("concurrency", "races run"),
    ("faults", "faults injected"),
    ("tamper", "tamper cases"),
    ("fuzz", "fuzz examples"),
    ("fail-closed", "engine failures"),
    ("gc", "gc runs"),
]


@pytest.fixture(scope="session")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote"))
    yield z
    z.close()


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("templates")
    return {mode: init_template(base / mode, mode) for mode in ("symlink", "copy")}


@pytest.fixture
def make_ws(tmp_path: Path, templates: dict[str, Path]) -> Make:
    """`make_ws(mode="symlink")`: a fresh, initialised workspace (a template's copy)."""
    n = itertools.count()

    def make(mode: str = "symlink") -> Path:
        return copy_workspace(templates[mode], tmp_path / f"ws{next(n)}")

    return make


@pytest.fixture
def cli(zygote: Zygote) -> Any:
    """Run a real CLI command in a forked, pre-imported process (the checker's runner)."""
    return zygote.run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    tr = terminalreporter
    tr.section("reliability summary")
    for cat, label in CATEGORIES:
        t = TALLY.get(cat)
        if not t:
            continue
        tr.write_line(
            f"{cat:12} {t['cases']:6d} {label:18} {t['checks']:5d} checker runs"
            f"  {t['inconsistent']} inconsistent states  {t['lost']} lost objects"
        )
    extra = sorted(set(TALLY) - {c for c, _ in CATEGORIES})
    for cat in extra:
        tr.write_line(f"{cat:12} {dict(TALLY[cat])}")
