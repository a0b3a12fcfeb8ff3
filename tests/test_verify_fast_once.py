"""In one process the chain and the re-justification share one walk: each entry is
read (and parsed) once, and the findings are the ones of the chain, then of the
re-justification."""

from __future__ import annotations

from pathlib import Path

from helpers import CountingLedger, Flow

from promote.ledger.files import FileLedger
from promote.verify import chain_and_justify, verify_ledger
from promote.workspace import Workspace


def test_each_entry_is_read_once(tmp_path: Path) -> None:
    flow = Flow.init(tmp_path / "ws")
    for data in (b"1", b"2", b"3", b"4"):
        assert flow.release({"release/a.txt": data}).returncode == 0
    ws = Workspace.load(flow.root)
    ledger = CountingLedger(ws)
    problems, state, ref, justified = chain_and_justify(ws, ledger, ws.store, jobs=1)
    assert (problems, justified) == ([], [])
    assert state is not None and ref == state.ref()
    assert ledger.seqs == [1, 2, 3, 4]
    # the chain alone gives the same state
    alone = verify_ledger(FileLedger(ws.ledger_dir, ws.store), ws.store)
    assert alone == (problems, state, ref)
