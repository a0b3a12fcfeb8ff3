"""Write docs/cli.md, the command-line reference, from the click commands.

    python docs/gen_cli.py            rewrite docs/cli.md   (what `make docs` runs)
    python docs/gen_cli.py --check    exit 1 if docs/cli.md is stale, write nothing

Every command and nested group of `cas` and `promote` (`cas.cli.main`,
`promote.cli.main`), depth first, sorted by name, hidden ones left out. For each: the
help click itself prints for `--help` (usage line, help text, options, subcommands),
at a fixed width of 80 columns, so the output depends only on the code.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

__all__ = ["CLI_MD", "render"]

CLI_MD = Path(__file__).resolve().parent / "cli.md"
WIDTH = 80

HEADER = """\
# Command-line reference

Generated from the click commands by `make docs` (`docs/gen_cli.py`); do not edit by
hand. `tests/test_docs.py` fails when this file no longer matches the code.

Both programs share one table of exit codes (see the [README](../README.md#exit-codes)):
0 ok, 1 internal error, 2 usage or invalid input, 3 integrity failure, 4 denied,
5 conflict. Errors are one line on stderr; `-v` adds the traceback.
"""


def _programs() -> list[tuple[str, click.Command]]:
    from cas.cli import main as cas_main
    from promote.cli import main as promote_main

    return [("cas", cas_main), ("promote", promote_main)]


def _walk(
    cmd: click.Command, name: str, parent: click.Context | None
) -> Iterator[tuple[str, click.Context]]:
    """(full name, context) of `cmd` and, depth first and sorted, every subcommand."""
    ctx = click.Context(
        cmd,
        info_name=name,
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        **cmd.context_settings,
    )
    yield ctx.command_path, ctx
    if isinstance(cmd, click.Group):
        for sub_name in sorted(cmd.commands):
            sub = cmd.commands[sub_name]
            if not sub.hidden:
                yield from _walk(sub, sub_name, ctx)


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading made of lowercase words and spaces."""
    return title.lower().replace(" ", "-")


def _inline(text: str) -> str:
    """`text` as Markdown inline text: code spans kept, `<`, `>` and `*` elsewhere escaped."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
    return "`".join(parts)


def render() -> str:
    """The whole of docs/cli.md."""
    index: list[str] = []
    sections: list[str] = []
    for prog, group in _programs():
        commands = list(_walk(group, prog, None))
        index.append(f"- [`{prog}`](#{_anchor(prog)})")
        for path, ctx in commands[1:]:
            short = _inline(ctx.command.get_short_help_str(limit=WIDTH))
            index.append(f"  - [`{path}`](#{_anchor(path)}): {short}")
        for depth_path, ctx in commands:
            level = "##" if depth_path == prog else "###"
            help_text = ctx.command.get_help(ctx).rstrip()
            sections.append(f"{level} {depth_path}\n\n```text\n{help_text}\n```\n")
    return HEADER + "\n" + "\n".join(index) + "\n\n" + "\n".join(sections)


def main(argv: list[str]) -> int:
    text = render()
    if argv == ["--check"]:
        if CLI_MD.read_text(encoding="utf-8") != text:
            print("docs/cli.md is stale: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: gen_cli.py [--check]", file=sys.stderr)
        return 2
    CLI_MD.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
