"""The version of the `cas-promote` distribution, without `importlib.metadata` (whose
import would be most of `cas --version`'s time). tests/store/test_cli.py checks that it
equals pyproject.toml's and the installed metadata's."""

__version__ = "0.1.0"
