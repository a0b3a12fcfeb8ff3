"""A test-only crash hook: kill this process with SIGKILL at a named step.

Off unless the environment sets `CAS_CRASH_AT`. Its value is `STEP` or `STEP:N`,
killing at the N-th time (1-based) the process reaches STEP. The reliability suite
uses it to prove that a crash at any step boundary loses and corrupts nothing. The
step names are listed in docs/reliability.md.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def crashpoint(step: str) -> None:
    """Die here if the test hook asks for it; otherwise do nothing."""
    target = os.environ.get("CAS_CRASH_AT")
    if not target:
        return
    name, _, nth = target.partition(":")
    if name != step:
        return
    _counts[step] = _counts.get(step, 0) + 1
    if _counts[step] == (int(nth) if nth else 1):
        os.kill(os.getpid(), signal.SIGKILL)
