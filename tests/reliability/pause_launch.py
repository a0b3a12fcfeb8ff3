"""Run a CLI that stops itself (SIGSTOP) at a chosen moment, so that a test can act on
the world around it (restart a server, drop its connection) before letting it go on.

    python pause_launch.py WHERE PROG ARGS...

WHERE is one of:

* `step:STEP[:N]`: where the crash hook would kill the process (`CAS_CRASH_AT=STEP`,
  cas/_crash.py); this launcher turns that self-SIGKILL into a SIGSTOP;
* `s3:OPERATION:N`: just before the N-th S3 request OPERATION (such as `UploadPart`
  or `GetObject`) leaves the process, through botocore's own client.

The test waits for the stop (waitpid with WUNTRACED), acts, then sends SIGCONT (or
SIGKILL). The command is the real console script's entry point, imported first, as
in fiu_launch.py; nothing else of it is changed.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

import cas.cli
import promote.cli

GROUPS = {"cas": cas.cli.main, "promote": promote.cli.main}


def _pause() -> None:
    os.kill(os.getpid(), signal.SIGSTOP)


def _at_step(step: str) -> None:
    os.environ["CAS_CRASH_AT"] = step
    real_kill = os.kill

    def kill(pid: int, sig: int) -> None:
        if pid == os.getpid() and sig == signal.SIGKILL:
            os.environ.pop("CAS_CRASH_AT", None)
            real_kill(pid, signal.SIGSTOP)
            return
        real_kill(pid, sig)

    os.kill = kill


def _at_s3_request(operation: str, nth: int) -> None:
    import botocore.client

    real_call = botocore.client.BaseClient._make_api_call
    lock = threading.Lock()
    seen = [0]

    def call(self: Any, operation_name: str, api_params: Any) -> Any:
        if operation_name == operation:
            with lock:
                seen[0] += 1
                now = seen[0] == nth
            if now:
                _pause()
        return real_call(self, operation_name, api_params)

    botocore.client.BaseClient._make_api_call = call  # type: ignore[method-assign]


def main() -> None:
    where, prog, *args = sys.argv[1:]
    kind, _, what = where.partition(":")
    if kind == "step":
        _at_step(what)
    elif kind == "s3":
        operation, _, nth = what.partition(":")
        _at_s3_request(operation, int(nth or 1))
    else:
        raise SystemExit(f"pause_launch: unknown WHERE {where!r}")
    sys.argv = [prog, *args]
    from cas import _cli

    _cli.run(GROUPS[prog], prog)


if __name__ == "__main__":
    main()
