"""Finding and opening a store from what the user said (flag, environment, workspace)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from cas.errors import UsageError

if TYPE_CHECKING:
    from cas.backend import ObjectStore

__all__ = [
    "CONFIG_PATH",
    "DEFAULT_STORE",
    "find_workspace",
    "init_store",
    "open_store",
    "resolve_store_spec",
]

#: Where a promote workspace keeps its configuration, relative to its root.
CONFIG_PATH = Path("control/promote/config.json")
#: The store of a workspace when its configuration names none.
DEFAULT_STORE = ".cas"


def find_workspace(start: Path) -> Path | None:
    """Walk up from `start` to the first directory holding a workspace config."""
    start = start.resolve()
    for d in (start, *start.parents):
        if (d / CONFIG_PATH).is_file():
            return d
    return None


def _store_of_workspace(root: Path) -> str:
    try:
        import json  # only in a workspace

        config = json.loads((root / CONFIG_PATH).read_bytes())
        spec = config.get("store", DEFAULT_STORE)
    except (OSError, ValueError, AttributeError) as e:
        raise UsageError(f"{root / CONFIG_PATH}: unreadable config: {e}") from None
    if not isinstance(spec, str) or not spec:
        raise UsageError(f"{root / CONFIG_PATH}: 'store' must be a non-empty string")
    if "://" in spec:
        return spec
    return str(root / spec)


def resolve_store_spec(explicit: str | None, cwd: Path | None = None) -> str:
    """The store to use: `--store`, else `CAS_STORE`, else the workspace's, else `.cas`.

    Without a flag or variable, the search walks up from `cwd` as git does: to a
    workspace config, or to a directory holding a `.cas/` store.
    """
    if explicit:
        return explicit
    env = os.environ.get("CAS_STORE")
    here = (cwd or Path.cwd()).resolve()
    root = os.environ.get("PROMOTE_ROOT")
    if env:
        ws = Path(root) if root else find_workspace(here)
        if ws is not None:  # inside a workspace, the variable may only repeat its config
            configured = _store_of_workspace(ws)
            if not _same_store(env, configured):
                raise UsageError(
                    f"CAS_STORE={env} disagrees with the store of the workspace {ws}"
                    f" ({configured}); unset CAS_STORE or pass --store"
                )
        return env
    if root:
        return _store_of_workspace(Path(root))
    for d in (here, *here.parents):
        if (d / CONFIG_PATH).is_file():
            return _store_of_workspace(d)
        if (d / DEFAULT_STORE / "cas-store.json").is_file():
            return str(d / DEFAULT_STORE)
    return str(here / DEFAULT_STORE)


def _same_store(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return Path(a).resolve() == Path(b).resolve()


def open_store(spec: str) -> ObjectStore:
    """Open the store named by `spec`: a directory, or `s3://bucket/prefix`.

    An S3 store takes its endpoint and credentials from the standard AWS environment
    and config files. boto3 is imported only then, so local use stays fast.
    """
    if spec.startswith("s3://"):
        from cas.s3 import S3Store

        return S3Store.existing(spec)
    _refuse_other_schemes(spec)
    from cas.local import LocalStore

    return LocalStore.existing(Path(spec))


def init_store(spec: str) -> ObjectStore:
    """Create the store named by `spec` (an S3 store's bucket too, when missing)."""
    if spec.startswith("s3://"):
        from cas.s3 import S3Store

        return S3Store.init(spec)
    _refuse_other_schemes(spec)
    from cas.local import LocalStore

    return LocalStore.init(Path(spec))


def _refuse_other_schemes(spec: str) -> None:
    if "://" in spec:
        raise UsageError(f"unsupported store {spec!r}: want a directory or s3://bucket/prefix")
