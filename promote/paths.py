"""Path hygiene: which authoritative paths a capsule may name.

A path is relative, `/`-separated, with no empty, `.` or `..` segment, no backslash,
and no NUL or other control character. It must start with an allow-listed prefix.
Two paths of one state may not collide once case-folded and Unicode-normalised (they
would be one file on macOS or Windows), and no path may be both a file and a
directory.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from promote.errors import Denied, InvalidCapsule

__all__ = ["check_allowed", "check_layout", "check_path", "fold"]


def check_path(path: str) -> None:
    """Refuse a malformed path.

    Raises:
        InvalidCapsule: naming the path and what is wrong with it.
    """
    why = _why_bad(path)
    if why:
        raise InvalidCapsule(f"bad target path {path!r}: {why}")


def _why_bad(path: str) -> str | None:
    if not path:
        return "empty"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "absolute"
    if path.endswith("/"):
        return "ends with '/'"
    for seg in path.split("/"):
        if seg == "":
            return "has an empty segment"
        if seg in (".", ".."):
            return f"has a {seg!r} segment"
    if unicodedata.normalize("NFC", path) != path:
        return "is not in Unicode NFC form"
    return None


def check_allowed(path: str, allow_list: Sequence[str]) -> None:
    """Raises Denied unless `path` starts with an allow-listed prefix."""
    if not any(path.startswith(prefix) for prefix in allow_list):
        raise Denied(f"target {path} is outside the allow-list {list(allow_list)}")


def fold(path: str) -> str:
    """The key under which two paths would be the same file on a folding filesystem."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKD", path).casefold())


def check_layout(new_paths: Sequence[str], existing: Iterable[str]) -> None:
    """Refuse collisions among `new_paths`, and file/directory conflicts with `existing`.

    Raises:
        InvalidCapsule: naming both colliding paths.
    """
    seen: dict[str, str] = {}
    for p in new_paths:
        key = fold(p)
        if key in seen:
            other = seen[key]
            if other == p:
                raise InvalidCapsule(f"target {p!r} appears twice")
            raise InvalidCapsule(
                f"targets {other!r} and {p!r} collide under case-folding or Unicode normalisation"
            )
        seen[key] = p
    files: dict[str, str] = {fold(p): p for p in existing}
    for key, p in seen.items():
        held = files.get(key)
        if held is not None and held != p:
            raise InvalidCapsule(
                f"target {p!r} collides with the existing path {held!r} under"
                " case-folding or Unicode normalisation"
            )
        files[key] = p
    dirs: dict[str, str] = {}
    for key, p in files.items():
        parts = key.split("/")
        for n in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:n]), p)
    for key, p in files.items():
        if key in dirs:
            raise InvalidCapsule(f"{p!r} would be both a file and the directory of {dirs[key]!r}")
