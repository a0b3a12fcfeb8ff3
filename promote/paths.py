"""Path hygiene: which authoritative paths a capsule may name.

A path is relative, `/`-separated, in Unicode NFC, with no empty, `.` or `..` segment,
no backslash, and no character of the Unicode categories Cc (controls, C0 and C1), Cf
(format, such as the bidi overrides), Zl, Zp (line and paragraph separators), Co
(private use), Cs (surrogates) or Cn (unassigned). Each segment is at most 255 bytes
of UTF-8 and the whole path at most 4,096, the limits of Linux file systems, so a path
that passes can always be materialized. It must start with an allow-listed prefix.
Two paths of one state may not collide once case-folded and Unicode-normalised (they
would be one file on macOS or Windows), and no path may be both a file and a
directory.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from promote.errors import Denied, InvalidCapsule

__all__ = [
    "MAX_PATH_BYTES",
    "MAX_SEGMENT_BYTES",
    "REFUSED_CATEGORIES",
    "check_allowed",
    "check_layout",
    "check_path",
    "fold",
    "why_bad",
]

#: The longest segment (file name) and path, in bytes of UTF-8 (NAME_MAX, PATH_MAX).
MAX_SEGMENT_BYTES = 255
MAX_PATH_BYTES = 4096

#: Unicode general categories a path may not contain, and what each is.
REFUSED_CATEGORIES = {
    "Cc": "a control character",
    "Cf": "a format character (such as a bidi override)",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cs": "a lone surrogate",
    "Cn": "an unassigned code point",
}


def check_path(path: str) -> None:
    """Refuse a malformed path.

    Raises:
        InvalidCapsule: naming the path and what is wrong with it.
    """
    why = why_bad(path)
    if why:
        raise InvalidCapsule(f"bad target path {path!r}: {why}")


def why_bad(path: str) -> str | None:
    """What is wrong with `path` (None when it is clean)."""
    if not path:
        return "empty"
    for c in path:
        category = unicodedata.category(c)
        if category in REFUSED_CATEGORIES:
            return f"contains U+{ord(c):04X}, {REFUSED_CATEGORIES[category]}"
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes of UTF-8"
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
        if len(seg.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes of UTF-8"
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
