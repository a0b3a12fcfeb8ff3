"""Fixtures of the reliability suite, and the summary of figures it prints at the end."""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability.checker import TALLY
from reliability.scenario import Zygote, copy_workspace, init_template

Make = Callable[..., Path]

CATEGORIES = [
    ("crash", "kills injected"),
    ("crash-pg", "crashes injected"),  # the ledger in PostgreSQL
    ("crash-s3", "crashes injected"),  # the store in S3
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
def fast_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where workspaces live: a tmpfs when there is one.

    The suite kills processes, it does not cut the power, so durability against the
    disk is not what it tests; on tmpfs the product's many fsyncs cost nothing, and
    hundreds of racing promotions fit in seconds.
    """
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="cas-reliability-", dir=shm))
        yield base
        for d, dirs, _ in os.walk(base):
            for name in dirs:
                os.chmod(Path(d, name), stat.S_IRWXU)
        shutil.rmtree(base, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp("workspaces")


@pytest.fixture(scope="session")
def templates(fast_dir: Path) -> dict[str, Path]:
    return {
        mode: init_template(fast_dir / f"template-{mode}", mode) for mode in ("symlink", "copy")
    }


_serial = itertools.count()


@pytest.fixture
def make_ws(fast_dir: Path, templates: dict[str, Path]) -> Make:
    """`make_ws(mode="symlink")`: a fresh, initialised workspace (a template's copy)."""

    def make(mode: str = "symlink") -> Path:
        return copy_workspace(templates[mode], fast_dir / f"ws{next(_serial)}")

    return make


@pytest.fixture
def cli(zygote: Zygote) -> Any:
    """Run a real CLI command in a forked, pre-imported process (the checker's runner)."""
    return zygote.run


#: The figures every row shows; a category's others follow it in parentheses.
_FIGURES = {"cases", "checks", "inconsistent", "lost"}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY:
        return
    tr = terminalreporter
    tr.section("reliability summary")
    for cat, label in CATEGORIES:
        t = TALLY.get(cat)
        if not t:
            continue
        more = [f"{n} {k}" for k, n in t.items() if k not in _FIGURES]
        tr.write_line(
            f"{cat:12} {t['cases']:6d} {label:18} {t['checks']:5d} checker runs"
            f"  {t['inconsistent']} inconsistent states  {t['lost']} lost objects"
            + (f"  ({', '.join(more)})" if more else "")
        )
    extra = sorted(set(TALLY) - {c for c, _ in CATEGORIES})
    for cat in extra:
        tr.write_line(f"{cat:12} {dict(TALLY[cat])}")
