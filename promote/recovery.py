"""`promote recover`: make everything agree with the ledger after a crash.

The ledger is the truth. Before its commit point a promotion leaves only unreferenced
objects (collected by `cas gc`) and perhaps an entry temp file (removed here). After
it, the entry exists whole; the HEAD cache and the view may lag, and are brought up
to date here.

Before it materializes a state, every entry up to the head must re-justify
(`promote.justify`; unsigned v1 entries are accepted here, a v1 after a v2 is not) and
the ledger must extend the workspace's checkpoint (`promote.rollback`): a hand-written
entry with HEAD fixed to match is refused (exit 3, one line), not put into the view.
"""

from __future__ import annotations

from cas.local import LocalStore
from promote.justify import require_justified
from promote.ledger.backend import CommitBackend, load_state
from promote.ledger.files import FileLedger
from promote.rollback import refuse_rollback
from promote.view import View
from promote.workspace import Workspace

__all__ = ["recover"]


def recover(ws: Workspace, ledger: CommitBackend) -> list[str]:
    """Returns what was done, one line each (empty when nothing needed doing)."""
    done: list[str] = []
    if isinstance(ledger, FileLedger):
        done += ledger.recover()
    head = ledger.head()
    state = load_state(ws.store, head.state)
    view = View(ws)
    if view.problems(state, head.state):
        require_justified(ledger, ws.store, head.seq)
        refuse_rollback(ws.root, ledger)
        head = view.sync(ledger)
        state = load_state(ws.store, head.state)
        done.append(f"rematerialized the view at ledger entry {head.seq}")
        if view.problems(state, head.state):
            done.append("the view still differs from the ledger: see 'promote verify'")
    store = ws.store
    if isinstance(store, LocalStore):
        stray = store.stray_temps()
        if stray:
            done.append(f"{len(stray)} stray temp files in the store: 'cas gc' removes them")
    return done
