"""The workspace: where config, policy, store, ledger and view live.

    control/promote/config.json   what this module reads
    control/policy/*.rego         the policy (and its *_test.rego tests)
    control/promote/trust.json    the trust roots: who may sign evidence
    execution/ledger/             the ledger (local commit backend)
    execution/promote/report.json the report of the last run
    .cas/                         the store (default)
    .promote/                     view generations and the view lock (derived state)
    .promote/keys/<role>.pem      the demo signing keys `promote init` makes (0600)

Both CLIs find the workspace by walking up from the current directory, as git does,
or take `--root` / `PROMOTE_ROOT`.
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Mapping
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
#: The remote stores and ledgers a config may name instead of a workspace directory.
STORE_SCHEMES = ("s3://",)
LEDGER_SCHEMES = ("postgresql://", "postgres://")


def _inside(key: str, value: object) -> str:
    """`value`, a clean relative path that stays inside the workspace, normalised.

    Raises:
        WorkspaceError: it is not a string, absolute, or climbs out with `..`.
    """
    if not isinstance(value, str) or not value or "\\" in value or "\x00" in value:
        raise WorkspaceError(f"{CONFIG_PATH}: {key} must be a relative directory")
    if os.path.isabs(value) or ".." in value.split("/"):
        raise WorkspaceError(
            f"{CONFIG_PATH}: {key} {value!r} leaves the workspace; it must be a relative"
            " directory inside it"
        )
    return posixpath.normpath(value)


def _covers(outer: str, inner: str) -> bool:
    """Whether the directory `inner` is `outer` or below it, compared case-folded."""
    from promote.paths import fold

    o, i = fold(outer).rstrip("/"), fold(inner).rstrip("/")
    return o == "." or i == o or i.startswith(o + "/")


def _with_options(
    config: dict[str, Any], allow: list[str] | None, mode: str | None
) -> dict[str, Any]:
    if allow:
        config["allow"] = list(allow)
    if mode:
        config["view"] = {**_section(config, "view"), "mode": mode}
    return config


def _differences(ws: Workspace, allow: list[str] | None, mode: str | None) -> list[str]:
    out = []
    if allow and list(allow) != ws.allow_list:
        out.append(f"allow is {ws.allow_list}, not {list(allow)}")
    if mode and mode != ws.view_mode:
        out.append(f"view.mode is {ws.view_mode!r}, not {mode!r}")
    return out


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
    def init(
        cls,
        root: Path,
        allow: list[str] | None = None,
        mode: str | None = None,
        force: bool = False,
    ) -> Workspace:
        """Lay out a workspace at `root`; what exists already is kept.

        The config is validated before anything is written. On an existing
        workspace, options that differ from its config are refused (naming what
        differs) unless `force`, which rewrites the config with them.

        Raises:
            WorkspaceError: the options, or the config they would give, are invalid;
                or they differ from the existing config and not `force`.
        """
        root = root.resolve()
        cfg_path = root / CONFIG_PATH
        if os.path.lexists(cfg_path):
            try:
                old: Workspace | None = cls.load(root)
            except WorkspaceError as e:
                if not force:
                    raise WorkspaceError(f"{e} (pass --force to rewrite the config)") from None
                old = None
            base = dict(old.config) if old is not None else dict(DEFAULT_CONFIG)
            config = _with_options(base, allow, mode)
            cls(root, config).validate()
            if old is not None:
                differs = _differences(old, allow, mode)
                if differs and not force:
                    raise WorkspaceError(
                        f"{root} is already a workspace, with other options: "
                        + "; ".join(differs)
                        + " (pass --force to rewrite its config)"
                    )
                if differs or old is None:
                    atomic_write(cfg_path, pretty(config))
            else:
                atomic_write(cfg_path, pretty(config))
        else:
            config = _with_options(dict(DEFAULT_CONFIG), allow, mode)
            cls(root, config).validate()  # before anything is written
            makedirs_durable(cfg_path.parent)
            atomic_write(cfg_path, pretty(config))
        ws = cls.load(root)
        policy = ws.policy_dir
        if not policy.exists():
            from importlib import resources  # init only

            makedirs_durable(policy)
            data = resources.files("promote").joinpath("data", "policy")
            for name in ("promote.rego", "promote_test.rego"):
                atomic_write(policy / name, data.joinpath(name).read_bytes())
        for d in (ws.ledger_dir / "entries", ws.report_path.parent):
            makedirs_durable(d)
        from promote.demo_keys import write_demo_trust

        write_demo_trust(ws.root)
        if isinstance(ws.store_spec, Path):
            LocalStore.init(ws.store_spec)
        return ws

    def validate(self) -> None:
        """Check the config as untrusted input.

        Raises:
            WorkspaceError: naming the key and what is wrong with it.
        """
        allow = self.allow_list
        if not isinstance(allow, list) or not allow:
            raise WorkspaceError(f"{CONFIG_PATH}: 'allow' must be a non-empty list of prefixes")
        from promote.paths import why_bad

        for prefix in allow:
            if not isinstance(prefix, str) or not prefix.endswith("/") or why_bad(prefix[:-1]):
                raise WorkspaceError(
                    f"{CONFIG_PATH}: allow-list prefix {prefix!r} must be a clean relative"
                    " directory ending in '/'"
                )
        if self.view_mode not in VIEW_MODES:
            raise WorkspaceError(f"{CONFIG_PATH}: view.mode must be one of {VIEW_MODES}")
        view_root = _inside("view.root", _section(self.config, "view")["root"])
        policy_dir = _inside("policy.dir", _section(self.config, "policy")["dir"])
        store = self.config.get("store", DEFAULT_CONFIG["store"])
        if not isinstance(store, str) or not store:
            raise WorkspaceError(f"{CONFIG_PATH}: 'store' must be a non-empty string")
        ledger = self.config.get("ledger", DEFAULT_CONFIG["ledger"])
        if not isinstance(ledger, str) or not ledger:
            raise WorkspaceError(f"{CONFIG_PATH}: 'ledger' must be a non-empty string")
        reserved = ["control", "execution", ".promote", ".git", policy_dir]
        if "://" in store:
            if not store.startswith(STORE_SCHEMES):
                raise WorkspaceError(f"{CONFIG_PATH}: store {store!r}: want a directory or s3://")
        elif not os.path.isabs(store):
            reserved.append(_inside("store", store))
        if "://" in ledger:
            if not ledger.startswith(LEDGER_SCHEMES):
                raise WorkspaceError(
                    f"{CONFIG_PATH}: ledger {ledger!r}: want a directory or postgresql://"
                )
        else:
            reserved.append(_inside("ledger", ledger))
        for prefix in allow:
            full = posixpath.normpath(posixpath.join(view_root, prefix))
            for r in reserved:
                if r == "." or _covers(full, r) or _covers(r, full):
                    raise WorkspaceError(
                        f"{CONFIG_PATH}: allow-list prefix {prefix!r} covers {r}/, which"
                        " promotions may not write"
                    )
        self._check_env_store(store)

    def _check_env_store(self, configured: str) -> None:
        env = os.environ.get("CAS_STORE")
        if not env:
            return
        if "://" in env or "://" in configured:
            same = env.rstrip("/") == configured.rstrip("/")
        else:
            same = Path(env).resolve() == (self.root / configured).resolve()
        if not same:
            raise WorkspaceError(
                f"CAS_STORE={env} disagrees with this workspace's store {configured!r}"
                f" ({CONFIG_PATH}); unset CAS_STORE or change the config"
            )

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
        """The configured store (`validate` refused a `$CAS_STORE` that disagrees)."""
        spec = str(self.config.get("store", DEFAULT_CONFIG["store"]))
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
