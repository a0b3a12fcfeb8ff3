"""Work spread over forked worker processes, so that per-object Python runs on every core.

fsck and `put_many` hand their work out in chunks. Threads do not scale there: BLAKE3
releases the GIL, the per-object Python around it does not. The workers are forked when
`fork_map` is called (never while the caller holds a store lock it could leak to them),
take chunk numbers from one pipe, send results back on a pipe of their own, and die with
their parent (`PR_SET_PDEATHSIG`). Where fork is missing, or one job is asked for, the
chunks run in this process, through the same code.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from collections.abc import Callable, Generator, Sequence
from typing import Any, TypeVar

__all__ = ["default_jobs", "fork_map"]

T = TypeVar("T")
R = TypeVar("R")

_INDEX = struct.Struct("<I")  # a chunk number on the task pipe: 4 bytes, written atomically
_FRAME = struct.Struct("<Q")  # the length of one pickled result on a result pipe
_FEED = 4096  # at most PIPE_BUF bytes a write, so that no chunk number is split


def default_jobs() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fork_map(
    fn: Callable[[T], R], tasks: Sequence[T], jobs: int
) -> Generator[tuple[int, R], None, None]:
    """Yield `(i, fn(tasks[i]))` for every task, in the order they finish.

    With `jobs` > 1 (and fork), `fn` runs in up to `jobs` forked children, which see this
    process's memory as it was at the call (so `fn` may be a closure). An exception
    raised by `fn` is raised here. Closing the iterator early (or an exception) kills the
    children that are left and waits for them, so that none outlives the call.
    """
    jobs = max(1, min(jobs, len(tasks)))
    if jobs == 1 or not hasattr(os, "fork"):
        for i, task in enumerate(tasks):
            yield i, fn(task)
        return
    import gc
    import pickle
    import selectors

    task_r, task_w = os.pipe()
    pids: list[int] = []
    readers: dict[int, bytearray] = {}
    parent = os.getpid()
    try:
        # What exists now is not collected in the children: a collection would write
        # to every object's header and so copy every page the children share with us.
        gc.freeze()
        for _ in range(jobs):
            res_r, res_w = os.pipe()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child: never returns into the caller's code
                code = 1
                try:
                    os.close(task_w)
                    os.close(res_r)
                    for r in readers:
                        os.close(r)
                    _child_setup(parent)
                    _serve(fn, tasks, task_r, res_w, pickle.dumps)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
            os.close(res_w)
            readers[res_r] = bytearray()
        os.close(task_r)
        task_r = -1
        os.set_blocking(task_w, False)
        feed = b"".join(_INDEX.pack(i) for i in range(len(tasks)))
        with selectors.DefaultSelector() as sel:
            sel.register(task_w, selectors.EVENT_WRITE)
            for r in readers:
                sel.register(r, selectors.EVENT_READ)
            left = len(tasks)
            while left:
                for key, _ in sel.select():
                    fd = int(key.fd)
                    if fd == task_w:
                        try:
                            n = os.write(task_w, feed[:_FEED])
                        except BlockingIOError:
                            continue
                        except BrokenPipeError:
                            raise RuntimeError(
                                "the worker processes ended before their work"
                            ) from None
                        feed = feed[n:]
                        if not feed:
                            sel.unregister(task_w)
                            os.close(task_w)
                            task_w = -1
                        continue
                    data = os.read(fd, 1 << 16)
                    buf = readers[fd]
                    if not data:
                        sel.unregister(fd)
                        if buf:
                            raise RuntimeError("a worker process sent a truncated result")
                        continue
                    buf += data
                    while len(buf) >= _FRAME.size:
                        (size,) = _FRAME.unpack_from(buf)
                        if len(buf) < _FRAME.size + size:
                            break
                        i, ok, value = pickle.loads(buf[_FRAME.size : _FRAME.size + size])
                        del buf[: _FRAME.size + size]
                        if not ok:
                            raise value
                        left -= 1
                        yield i, value
                if left and not sel.get_map():
                    raise RuntimeError("the worker processes ended before their work")
    finally:
        gc.unfreeze()
        for fd in (task_r, task_w, *readers):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)  # no-op for one that has exited already
            except ProcessLookupError:
                pass
        for pid in pids:
            while True:
                try:
                    os.waitpid(pid, 0)
                    break
                except InterruptedError:
                    continue
                except ChildProcessError:
                    break


def _child_setup(parent: int) -> None:
    """A worker takes the default action on signals and dies with its parent."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if sys.platform == "linux":
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the prctl
        os._exit(1)


def _serve(
    fn: Callable[[Any], Any],
    tasks: Sequence[Any],
    task_r: int,
    res_w: int,
    dumps: Callable[[Any], bytes],
) -> None:
    while True:
        got = os.read(task_r, _INDEX.size)
        if not got:
            return
        (i,) = _INDEX.unpack(got)
        try:
            out = (i, True, fn(tasks[i]))
        except BaseException as e:  # sent to the parent, which raises it
            out = (i, False, e)
        try:
            data = dumps(out)
        except Exception as e:  # an unpicklable result or exception
            data = dumps((i, False, RuntimeError(f"worker result not transferable: {e!r}")))
        view = memoryview(_FRAME.pack(len(data)) + data)
        while view:
            view = view[os.write(res_w, view) :]
