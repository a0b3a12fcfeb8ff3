"""Run a CLI under libfiu, failing the next call of one POSIX function after a step.

    fiu-run -x -f "" python fiu_launch.py POINT ERRNO STEP PROG ARGS...

`fiu-run -x` preloads libfiu's POSIX wrappers. This launcher imports the CLI first (so
the interpreter's own start-up is not what fails), then arms POINT (such as
`posix/io/rw/write`) to fail once, with errno ERRNO, at a chosen moment: at once when
STEP is `start`, else when the process reaches crash step STEP (`put.renamed:2`). It
reuses the crash hook: with `CAS_CRASH_AT=STEP` the product would SIGKILL itself
there, and this launcher turns that self-kill into arming the fault instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

import cas.cli
import promote.cli

GROUPS = {"cas": cas.cli.main, "promote": promote.cli.main}
FIU_ONETIME = 1


def main() -> None:
    point, err, step, prog, *args = sys.argv[1:]
    lib = ctypes.CDLL(ctypes.util.find_library("fiu") or "libfiu.so.0")
    lib.fiu_enable.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
    lib.fiu_enable.restype = ctypes.c_int

    def arm() -> None:
        # failinfo is the errno the POSIX wrapper sets when the point fails
        lib.fiu_enable(point.encode(), 1, ctypes.c_void_p(int(err)), FIU_ONETIME)

    if step == "start":
        arm()
    else:
        os.environ["CAS_CRASH_AT"] = step
        real_kill = os.kill

        def kill(pid: int, sig: int) -> None:
            if pid == os.getpid() and sig == signal.SIGKILL:
                os.environ.pop("CAS_CRASH_AT", None)
                arm()
                return
            real_kill(pid, sig)

        os.kill = kill
    sys.argv = [prog, *args]
    from cas import _cli

    _cli.run(GROUPS[prog], prog)


if __name__ == "__main__":
    main()
