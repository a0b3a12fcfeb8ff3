"""The `cas` executable's entry point: `cas --version` answers without loading click or
the store; everything else goes to `cas.cli`."""

from __future__ import annotations

import sys
from typing import NoReturn


def run() -> NoReturn:
    if sys.argv[1:] == ["--version"]:
        from cas._version import __version__

        sys.stdout.write(f"cas, version {__version__}\n")  # what click's version_option says
        sys.stdout.flush()
        sys.exit(0)
    from cas.cli import run as run_cli

    run_cli()
