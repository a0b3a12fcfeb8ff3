"""Faults at the file ledger's commit point: link(2) of the entry fails.

`promote` writes the entry to a temp file, then link(2)s it to `entries/<seq>.json`
(promote/ledger/files.py, `_link_entry`): the commit point. libfiu's POSIX wrappers
have no link(2), so fiu_launch.py adds that point (`posix/io/dir/link`) through
libfiu's own fiu_fail, armed once at the `commit.before` step, just before the link.

Invariant: whatever errno link(2) returns (EIO, ENOSPC, or EEXIST, which names an
entry that is not there), the promotion fails with one clear line and a non-zero
exit; no entry, no entry temp, no HEAD change and no view change is left; the
checker is clean at once, with no recovery; and the same capsule then promotes.
"""

from __future__ import annotations

import errno
import os

import pytest
from reliability.checker import check, count
from reliability.scenario import entries, prepare
from reliability.test_faults import FIU_RUN, ONE_LINE, _faulted

pytestmark = pytest.mark.skipif(
    FIU_RUN is None and not os.environ.get("CI"),
    reason="libfiu's fiu-run is not installed (apt-get install fiu-utils; .ci/run does)",
)

#: errno -> (exit code, what the one line says, of the ledger directory LEDGER)
WANT = {
    errno.EIO: (1, "promote: error: cannot write the ledger LEDGER: Input/output error"),
    errno.ENOSPC: (1, "promote: error: cannot write the ledger LEDGER: No space left on device"),
    errno.EEXIST: (5, "promote: conflict: ledger entry 2 already exists"),
}
CASES = [(e, m) for e in WANT for m in ("symlink", "copy")]


@pytest.mark.parametrize(
    ("err", "mode"), CASES, ids=[f"{errno.errorcode[e]}-{m}" for e, m in CASES]
)
def test_link_fails_at_the_commit_point(make_ws, zygote, err: int, mode: str) -> None:
    root = make_ws(mode)
    first = prepare(root, {"release/a": b"a1"}, name="first")
    assert zygote.run("promote", first, cwd=root).returncode == 0
    ledger = root / "execution/ledger"
    head_before = (ledger / "HEAD").read_bytes()
    view_before = sorted(p.relative_to(root) for p in (root / "release").rglob("*"))
    cap = prepare(root, {"release/a": b"a2", "release/b": b"b2"})
    r = _faulted(root, "posix/io/dir/link", err, "commit.before", "promote", str(cap))
    count("faults", "cases")
    count("faults", "link faults")
    code, line = WANT[err]
    assert b"Traceback" not in r.stderr
    assert r.returncode == code, r.stderr
    assert ONE_LINE.match(r.stderr), r.stderr
    assert r.stderr.decode() == line.replace("LEDGER", str(ledger)) + "\n"
    # no entry, no half state: not even the entry's temp file
    assert len(entries(root)) == 1
    assert sorted(p.name for p in (ledger / "entries").iterdir()) == ["000000000001.json"]
    assert (ledger / "HEAD").read_bytes() == head_before
    assert sorted(p.relative_to(root) for p in (root / "release").rglob("*")) == view_before
    assert (root / "release/a").read_bytes() == b"a1"
    check(root, zygote.run, category="faults")
    again = zygote.run("promote", cap, cwd=root)
    assert again.returncode == 0, again.stderr
    report = check(root, zygote.run, category="faults")
    assert report.head_seq == 2
