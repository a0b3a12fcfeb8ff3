"""Write docs/man/, one roff man page per command, from the click commands.

    python docs/gen_man.py            rewrite docs/man/   (what `make docs` runs)
    python docs/gen_man.py --check    exit 1 if docs/man/ is stale, write nothing

The same commands as docs/cli.md (`gen_cli.py`'s walk: every command and nested group
of `cas` and `promote`, hidden ones left out), each as `<command path with
dashes>.1`: `cas.1`, `cas-put.1`, `promote-ledger-verify.1`. Each page is what click
prints for `--help`, written by click's own `format_help` into a formatter that emits
roff instead of text (so a group's extra sections, such as promote's "Options of
promote CAPSULE", are there too), with NAME and SEE ALSO added. No date, no version,
no path: the pages depend only on the code. Read one with `man -l docs/man/cas-put.1`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import click

__all__ = ["MAN_DIR", "render"]

HERE = Path(__file__).resolve().parent
MAN_DIR = HERE / "man"
SOURCE = "cas-promote"
MANUAL = "cas-promote manual"


def _gen_cli() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_cli", HERE / "gen_cli.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_CODE = re.compile(r"`([^`\n]+)`")


def _escape(text: str) -> str:
    """`text` as roff text: backslashes and dashes escaped, `code` spans in bold."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return _CODE.sub(r"\\fB\1\\fR", text)


def _lines(text: str, strip: bool = True) -> str:
    """Escaped `text`, no line starting with a control character."""
    out = []
    for line in _escape(text).split("\n"):
        line = line.strip() if strip else line.rstrip()
        out.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(out)


class RoffFormatter(click.HelpFormatter):
    """A HelpFormatter whose output is roff: usage as SYNOPSIS, the help text as
    DESCRIPTION, each section as .SH and each definition list as .TP items.

    Width is unbounded, so that click shortens no command's summary.
    """

    def __init__(self) -> None:
        super().__init__(width=10_000, max_width=10_000)
        self._described = False

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        self.write(f".SH SYNOPSIS\n.B {_escape(prog)}\n{_lines(args)}\n")

    def write_heading(self, heading: str) -> None:
        self.write(f'.SH "{_escape(heading.upper())}"\n')

    def write_paragraph(self) -> None:
        pass  # roff separates paragraphs itself

    def write_text(self, text: str) -> None:
        if not self._described:
            self.write(".SH DESCRIPTION\n")
            self._described = True
        paragraphs = re.split(r"\n\s*\n", text.strip())
        for i, para in enumerate(paragraphs):
            if i:
                self.write(".PP\n")
            if para.startswith("\b\n"):  # click's mark for a block not to rewrap
                self.write(f".nf\n{_lines(para[2:], strip=False)}\n.fi\n")
            else:
                self.write(_lines(" ".join(para.split())) + "\n")

    def write_dl(
        self, rows: Sequence[tuple[str, str]], col_max: int = 30, col_spacing: int = 2
    ) -> None:
        for term, definition in rows:
            self.write(f".TP\n\\fB{_escape(term)}\\fR\n{_lines(' '.join(definition.split()))}\n")

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        self.write_heading(name)
        yield

    @contextmanager
    def indentation(self) -> Iterator[None]:
        yield


def _page_name(path: str) -> str:
    return path.replace(" ", "-")


def _page(path: str, ctx: click.Context, related: list[str]) -> str:
    cmd = ctx.command
    name = _page_name(path)
    fmt = RoffFormatter()
    cmd.format_help(ctx, fmt)
    short = cmd.get_short_help_str(limit=10_000)
    see_also = ",\n".join(f"\\fB{_escape(r)}\\fR(1)" for r in related)
    return (
        f'.TH "{_escape(name.upper())}" "1" "" "{SOURCE}" "{MANUAL}"\n'
        ".SH NAME\n"
        f"{_escape(name)} \\- {_lines(short)}\n"
        f"{fmt.getvalue()}"
        '.SH "SEE ALSO"\n'
        f"{see_also}\n"
    )


def render() -> dict[str, str]:
    """Every page: file name -> contents."""
    gen = _gen_cli()
    pages: dict[str, str] = {}
    for prog, group in gen._programs():
        commands = list(gen._walk(group, prog, None))
        paths = [p for p, _ in commands]
        for path, ctx in commands:
            parent = path.rsplit(" ", 1)[0] if " " in path else None
            children = [p for p in paths if p.rsplit(" ", 1)[0] == path and p != path]
            related = [_page_name(p) for p in ([parent] if parent else []) + children]
            if not related:
                related = [_page_name(p) for p in paths if p != path]
            pages[f"{_page_name(path)}.1"] = _page(path, ctx, related)
    return pages


def main(argv: list[str]) -> int:
    pages = render()
    on_disk = {p.name: p for p in MAN_DIR.glob("*.1")} if MAN_DIR.is_dir() else {}
    if argv == ["--check"]:
        current = {name: p.read_text(encoding="utf-8") for name, p in on_disk.items()}
        if current != pages:
            print("docs/man/ is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: gen_man.py [--check]", file=sys.stderr)
        return 2
    MAN_DIR.mkdir(exist_ok=True)
    for name, p in on_disk.items():
        if name not in pages:
            p.unlink()
    for name, text in pages.items():
        (MAN_DIR / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
