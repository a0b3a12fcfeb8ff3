"""The documentation stays true to the code: docs/cli.md, the man pages, the README's
size, the links."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
README_MAX_BYTES = 12_000  # a short README; the reference lives in docs/

DOCS = sorted([README, *(REPO / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "docs" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gen_cli() -> ModuleType:
    return _load("gen_cli")


def _prose(text: str) -> str:
    """`text` without fenced blocks and code spans, where `[x](y)` is not a link."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def _anchors(md: Path) -> set[str]:
    """The anchors GitHub gives the headings of `md` (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    anchors = set()
    for title in _HEADING.findall(_FENCE.sub("", md.read_text(encoding="utf-8"))):
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def test_cli_reference_is_current() -> None:
    gen = _gen_cli()
    current = gen.CLI_MD.read_text(encoding="utf-8") if gen.CLI_MD.exists() else ""
    if current != gen.render():
        pytest.fail("docs/cli.md is stale: run `make docs`", pytrace=False)


def test_cli_reference_is_deterministic() -> None:
    gen = _gen_cli()
    assert gen.render() == gen.render()
    assert "/tmp" not in gen.render()


def test_man_pages_are_current() -> None:
    """docs/man/ holds exactly the generated pages: none stale, none missing, none extra."""
    gen = _load("gen_man")
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in gen.MAN_DIR.glob("*.1")}
    if on_disk != gen.render():
        pytest.fail("docs/man/ is stale: run `make docs`", pytrace=False)


def test_man_pages_cover_every_command_and_are_deterministic() -> None:
    gen_cli, gen_man = _gen_cli(), _load("gen_man")
    pages = gen_man.render()
    assert pages == gen_man.render()
    paths = [p for prog, group in gen_cli._programs() for p, _ in gen_cli._walk(group, prog, None)]
    assert sorted(pages) == sorted(p.replace(" ", "-") + ".1" for p in paths)
    assert {"cas.1", "cas-put.1", "promote.1", "promote-ledger-verify.1"} <= set(pages)
    text = "".join(pages.values())
    assert "/tmp" not in text and str(REPO) not in text
    assert all(p.startswith('.TH "') and '" "1" "" "' in p.splitlines()[0] for p in pages.values())


def test_man_page_renders() -> None:
    """`man -l` shows a page's name, synopsis, options, and promote's run options."""
    man = shutil.which("man")
    if man is None:
        pytest.skip("man (Debian man-db) is not installed")
    env = {**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C"}

    def show(page: str) -> str:
        r = subprocess.run(
            [man, "-l", str(REPO / "docs/man" / page)], capture_output=True, text=True, env=env
        )
        assert r.returncode == 0 and r.stderr == "", r.stderr
        return " ".join(r.stdout.split())  # man justifies lines with extra spaces

    out = show("cas-put.1")
    assert "cas-put - Ingest FILES" in out
    assert "cas put [OPTIONS] FILES..." in out
    assert "-r, --recursive" in out
    out = show("promote.1")
    assert "OPTIONS OF PROMOTE CAPSULE (PROMOTE RUN)" in out and "--dry-run" in out
    assert "promote-ledger(1)" in out


def test_readme_is_short() -> None:
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move reference material to docs/"
    )


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(md: Path) -> None:
    broken = []
    for target in _LINK.findall(_prose(md.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (md.parent / path_part).resolve() if path_part else md
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(REPO)})")
    assert not broken, f"{md.relative_to(REPO)}: broken links: {broken}"
