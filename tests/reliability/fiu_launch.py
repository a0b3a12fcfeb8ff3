"""Run a CLI under libfiu, failing the next call of one POSIX function after a step.

    fiu-run -x -f "" python fiu_launch.py POINT ERRNO STEP PROG ARGS...

`fiu-run -x` preloads libfiu's POSIX wrappers. This launcher imports the CLI first (so
the interpreter's own start-up is not what fails), then arms POINT (such as
`posix/io/rw/write`) to fail once, with errno ERRNO, at a chosen moment: at once when
STEP is `start`, else when the process reaches crash step STEP (`put.renamed:2`). It
reuses the crash hook: with `CAS_CRASH_AT=STEP` the product would SIGKILL itself
there, and this launcher turns that self-kill into arming the fault instead.

libfiu's POSIX wrappers cover rename(2) and unlink(2) but not link(2), the file
ledger's commit point. This launcher adds that point, `posix/io/dir/link`, as
libfiu's own wrappers do, one level up: `os.link` (the one way the product calls
link(2)) asks libfiu's `fiu_fail` first and, when the point fails, raises the errno
its failinfo holds, without calling link(2).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import sys

import cas.cli
import promote.cli

GROUPS = {"cas": cas.cli.main, "promote": promote.cli.main}
FIU_ONETIME = 1
LINK_POINT = "posix/io/dir/link"


def _wrap_link(lib: ctypes.CDLL) -> None:
    """Make `os.link` fail as libfiu says for LINK_POINT (see the module's doc)."""
    lib.fiu_fail.argtypes = [ctypes.c_char_p]
    lib.fiu_fail.restype = ctypes.c_int
    lib.fiu_failinfo.argtypes = []
    lib.fiu_failinfo.restype = ctypes.c_void_p
    real_link = os.link

    def link(src: str, dst: str, **kw: object) -> None:
        if lib.fiu_fail(LINK_POINT.encode()):
            err = int(lib.fiu_failinfo() or errno.EIO)
            raise OSError(err, os.strerror(err), src, None, dst)
        real_link(src, dst, **kw)  # type: ignore[arg-type]

    os.link = link


def main() -> None:
    point, err, step, prog, *args = sys.argv[1:]
    lib = ctypes.CDLL(ctypes.util.find_library("fiu") or "libfiu.so.0")
    lib.fiu_enable.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint]
    lib.fiu_enable.restype = ctypes.c_int
    _wrap_link(lib)

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
