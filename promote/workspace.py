"""The workspace: where config, policy, store, ledger and view live.

    control/promote/config.json   what this module reads
    control/policy/*.rego         the policy (and its *_test.rego tests)
    execution/ledger/             the ledger (local commit backend)
    execution/promote/report.json the report of the last run
    .cas/                         the store (default)
    .promote/                     view generations and the view lock (derived state)

Both CLIs find the workspace by walking up from the current directory, as git does,
or take `--root` / `PROMOTE_ROOT`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from cas.backend import ObjectStore
from cas.fsutil import atomic_write, makedirs_durable
from cas.local import LocalStore
from cas.stores import CONFIG_PATH, find_workspace, open_store
from promote.canonical import load_json, pretty
from promote.errors import InvalidDocument, WorkspaceError

__all__ = ["DEFAULT_CONFIG", "Workspace"]

CONFIG_SCHEMA = "promote-config/v1"
DEFAULT_CONFIG: dict[str, Any] = {
    "schema": CONFIG_SCHEMA,
    "store": ".cas",
    "ledger": "execution/ledger",
    "allow": ["release/"],
    "view": {"mode": "symlink", "root": "."},
    "engine": {"kind": "regorus"},
    "policy": {"dir": "control/policy", "package": "promote"},
}
_KEYS = set(DEFAULT_CONFIG)
VIEW_MODES = ("symlink", "copy")


def _section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key, DEFAULT_CONFIG[key])
    if not isinstance(value, dict):
        raise WorkspaceError(f"config: '{key}' must be an object")
    return {**DEFAULT_CONFIG[key], **value}


@attrs.frozen
class Workspace:
    root: Path
    config: Mapping[str, Any]

    # -- finding and creating ------------------------------------------------

    @classmethod
    def find(cls, explicit: Path | None = None) -> Workspace:
        """`explicit`, else `$PROMOTE_ROOT`, else walk up from the current directory.

        Raises:
            WorkspaceError: when there is none, or its config is broken.
        """
        root = explicit or (
            Path(os.environ["PROMOTE_ROOT"]) if os.environ.get("PROMOTE_ROOT") else None
        )
        if root is None:
            root = find_workspace(Path.cwd())
            if root is None:
                raise WorkspaceError(
                    "not in a promote workspace (no control/promote/config.json here or"
                    " above; create one with 'promote init')"
                )
        return cls.load(Path(root))

    @classmethod
    def load(cls, root: Path) -> Workspace:
        path = root / CONFIG_PATH
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise WorkspaceError(
                f"{root}: no {CONFIG_PATH} (create one with 'promote init')"
            ) from None
        except OSError as e:
            raise WorkspaceError(f"{path}: {e.strerror}") from None
        try:
            config = load_json(data, str(CONFIG_PATH))
        except InvalidDocument as e:
            raise WorkspaceError(str(e)) from None
        if not isinstance(config, dict) or config.get("schema") != CONFIG_SCHEMA:
            raise WorkspaceError(f"{CONFIG_PATH}: want an object with schema {CONFIG_SCHEMA!r}")
        unknown = set(config) - _KEYS
        if unknown:
            raise WorkspaceError(f"{CONFIG_PATH}: unknown keys {sorted(unknown)}")
        ws = cls(root.resolve(), config)
        ws.validate()
        return ws

    @classmethod
    def init(cls, root: Path, allow: list[str] | None = None, mode: str | None = None) -> Workspace:
        """Lay out a workspace at `root`; what exists already is kept."""
        root = root.resolve()
        config = dict(DEFAULT_CONFIG)
        if allow:
            config["allow"] = allow
        if mode:
            config["view"] = {**DEFAULT_CONFIG["view"], "mode": mode}
        cfg_path = root / CONFIG_PATH
        makedirs_durable(cfg_path.parent)
        if not cfg_path.exists():
            atomic_write(cfg_path, pretty(config))
        ws = cls.load(root)
        policy = ws.policy_dir
        if not policy.exists():
            makedirs_durable(policy)
            data = resources.files("promote").joinpath("data", "policy")
            for name in ("promote.rego", "promote_test.rego"):
                atomic_write(policy / name, data.joinpath(name).read_bytes())
        for d in (ws.ledger_dir / "entries", ws.report_path.parent):
            makedirs_durable(d)
        if isinstance(ws.store_spec, Path):
            LocalStore.init(ws.store_spec)
        return ws

    def validate(self) -> None:
        allow = self.allow_list
        if not isinstance(allow, list) or not allow:
            raise WorkspaceError(f"{CONFIG_PATH}: 'allow' must be a non-empty list of prefixes")
        from promote.paths import _why_bad

        for prefix in allow:
            if not isinstance(prefix, str) or not prefix.endswith("/") or _why_bad(prefix[:-1]):
                raise WorkspaceError(
                    f"{CONFIG_PATH}: allow-list prefix {prefix!r} must be a clean relative"
                    " directory ending in '/'"
                )
        if self.view_mode not in VIEW_MODES:
            raise WorkspaceError(f"{CONFIG_PATH}: view.mode must be one of {VIEW_MODES}")

    # -- what the config says -----------------------------------------------

    @property
    def allow_list(self) -> list[str]:
        return self.config.get("allow", DEFAULT_CONFIG["allow"])  # type: ignore[no-any-return]

    @property
    def view_mode(self) -> str:
        return str(_section(self.config, "view")["mode"])

    @property
    def view_root(self) -> Path:
        return (self.root / str(_section(self.config, "view")["root"])).resolve()

    @property
    def engine_config(self) -> dict[str, Any]:
        return _section(self.config, "engine")

    @property
    def policy_dir(self) -> Path:
        return self.root / str(_section(self.config, "policy")["dir"])

    @property
    def policy_package(self) -> str:
        return str(_section(self.config, "policy")["package"])

    @property
    def store_spec(self) -> Path | str:
        spec = os.environ.get("CAS_STORE") or str(self.config.get("store", DEFAULT_CONFIG["store"]))
        return spec if "://" in spec else self.root / spec

    @property
    def ledger_spec(self) -> str:
        return str(self.config.get("ledger", DEFAULT_CONFIG["ledger"]))

    @property
    def ledger_dir(self) -> Path:
        return (
            self.root / "execution" / "ledger"
            if "://" in self.ledger_spec
            else self.root / self.ledger_spec
        )

    @property
    def report_path(self) -> Path:
        return self.root / "execution" / "promote" / "report.json"

    @property
    def meta_dir(self) -> Path:
        """Derived local state: view generations and the view lock."""
        return self.root / ".promote"

    # -- the parts -----------------------------------------------------------

    @functools.cached_property
    def store(self) -> ObjectStore:
        return open_store(str(self.store_spec))
