"""`promote`: the command line of the promotion gate."""

from __future__ import annotations

from typing import NoReturn

import click

from cas import _cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Promote artifacts from the store to authoritative paths."""


def run() -> NoReturn:
    _cli.run(main, "promote")
