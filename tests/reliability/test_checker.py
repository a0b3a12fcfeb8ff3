"""The checker itself: it accepts no damage.

Invariant: a deleted view fails `view="any"` as it fails `view="head"`; an expected
problem excuses only the object it names, so a second lost object fails; and every
lost object is counted, not only the first.
"""

from __future__ import annotations

import os
from pathlib import Path

import blake3
import pytest
from reliability.checker import TALLY, Inconsistent, check
from reliability.scenario import Zygote, prepare


def _two_promotions(root: Path, cli: Zygote) -> None:
    for n, files in enumerate([{"release/a": b"a1"}, {"release/b": b"b2"}]):
        cap = prepare(root, files, name=f"p{n}")
        assert cli("promote", cap, cwd=root).returncode == 0


def _obj(root: Path, data: bytes) -> Path:
    h = blake3.blake3(data).hexdigest()
    return root / ".cas/objects/blake3" / h[:2] / h[2:]


@pytest.mark.parametrize("mode", ["symlink", "copy"])
@pytest.mark.parametrize("view", ["head", "any"])
def test_a_deleted_view_is_refused(make_ws, cli: Zygote, mode: str, view: str) -> None:
    root = make_ws(mode)
    _two_promotions(root, cli)
    check(root, cli, category="checker", view=view)
    release = root / "release"
    if release.is_symlink():
        release.unlink()
    else:
        for p in release.iterdir():
            os.chmod(p, 0o644)
            p.unlink()
        release.rmdir()
    with pytest.raises(Inconsistent, match="missing release"):
        check(root, cli, category="checker", view=view)


def test_a_second_lost_object_is_refused_and_counted(make_ws, cli: Zygote) -> None:
    root = make_ws()
    _two_promotions(root, cli)
    first, second = _obj(root, b"a1"), _obj(root, b"b2")
    for p in (first, second):
        os.chmod(p.parent, 0o755)
        p.unlink()
    excuse = [("missing", first.relative_to(root / ".cas").as_posix())]
    lost_before = TALLY["checker"]["lost"]
    with pytest.raises(Inconsistent) as raised:
        check(root, cli, category="checker", view="any", expect=excuse)
    message = str(raised.value)
    assert second.parent.name + second.name in message.replace("/", "")
    assert first.parent.name + first.name not in message.replace("/", "")
    assert TALLY["checker"]["lost"] - lost_before == 1
    lost_before = TALLY["checker"]["lost"]
    with pytest.raises(Inconsistent):
        check(root, cli, category="checker", view="any")
    assert TALLY["checker"]["lost"] - lost_before == 2  # both, not only the first


def test_a_view_marker_naming_no_state_is_refused(make_ws, cli: Zygote) -> None:
    root = make_ws()
    _two_promotions(root, cli)
    import shutil

    link = root / ".promote/current"
    shutil.copytree(link.resolve(), root / ".promote/generations" / ("ab" * 32), symlinks=True)
    tmp = root / ".promote/current.x"
    tmp.symlink_to("generations/" + "ab" * 32)
    os.replace(tmp, link)
    with pytest.raises(Inconsistent, match="no state of the ledger"):
        check(root, cli, category="checker", view="any")


def test_a_missing_head_cache_is_a_lag_until_recovered(make_ws, cli: Zygote) -> None:
    """What a fault between the first entry's link and HEAD's write leaves: the file
    ledger's HEAD cache lags from the genesis. A whole state after a crash, not the head
    state, until `promote recover` writes HEAD again."""
    root = make_ws()
    assert cli("promote", prepare(root, {"release/a": b"a1"}, name="p0"), cwd=root).returncode == 0
    head = root / "execution/ledger/HEAD"
    head.unlink()
    check(root, cli, category="checker", view="any")
    with pytest.raises(Inconsistent, match="1 entries and no head"):
        check(root, cli, category="checker", view="head")
    assert cli("promote", "recover", cwd=root).returncode == 0
    assert head.exists()
    check(root, cli, category="checker", view="head")
