"""The `promote` command line: `promote.cli.app` assembles the command families."""

from promote.cli.app import main, run_main

__all__ = ["main", "run_main"]
