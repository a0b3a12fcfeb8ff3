"""A pre-imported process that forks real CLI runs on request, so a test can start,
race and kill hundreds of `cas` and `promote` processes in seconds.

Each child is a real OS process that runs the console script's own entry point
(`cas._cli.run` with the click group) in a fresh directory and environment, exactly
as the installed script would after its imports. Only the interpreter start-up is
saved. The zygote itself never runs a command, so it stays single-threaded and safe
to fork.

Protocol, one JSON object per line on stdin, one reply per line on stdout:

    {"jobs": [{"prog", "argv", "cwd", "env", "out", "err", "loop"}...]}
        -> {"pids": [...]}   once every child is forked and released together,
        -> {"status": [...]} once every child has ended (returncode, -9 when killed).
"""

from __future__ import annotations

import json
import os
import random
import sys
from typing import Any

import cas.cli
import promote.cli
import promote.gate
import promote.policy.engines
import promote.recovery
import promote.verify
import promote.view

try:  # warm what the gate imports lazily, so children start at once
    import jsonschema  # noqa: F401
    import psycopg  # noqa: F401  (the PostgreSQL rows' children)
    import regorus  # noqa: F401

    import cas.s3  # (boto3: the S3 rows' children)

    promote.model._validator("promote_capsule.schema.json")
    promote.model._validator("check_report.schema.json")
except Exception:  # pragma: no cover - a child reports any real failure
    pass

GROUPS = {"cas": cas.cli.main, "promote": promote.cli.main}


def _child(job: dict[str, Any], gate: int) -> None:
    os.read(gate, 1)  # wait until every sibling is forked: they start together
    os.close(gate)
    out = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    err = os.open(job["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(job["cwd"])
    for k in [k for k in os.environ if k.startswith(("CAS_", "PROMOTE_"))]:
        del os.environ[k]
    os.environ.update(job.get("env") or {})
    code = 0
    try:
        if job.get("loop"):
            _loop(job["loop"])
        else:
            sys.argv = [job["prog"], *job["argv"]]
            from cas import _cli

            _cli.run(GROUPS[job["prog"]], job["prog"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _loop(spec: dict[str, Any]) -> None:
    """Puts and promotions, one after another, until killed (the random-kill loop)."""
    from scenario import loop_step

    rng = random.Random(spec["seed"])
    for i in range(spec.get("steps", 1000)):
        loop_step(rng, i, spec)


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if sys.argv[1:2] == ["--loop"]:  # a plain writer process, no forking
        _loop(json.loads(sys.argv[2]))
        return
    for line in sys.stdin:
        req = json.loads(line)
        jobs = req["jobs"]
        r, w = os.pipe()
        pids = []
        for job in jobs:
            pid = os.fork()
            if pid == 0:
                os.close(w)
                _child(job, r)
            pids.append(pid)
        os.close(r)
        print(json.dumps({"pids": pids}), flush=True)
        os.write(w, b"x" * len(jobs))
        os.close(w)
        status = []
        for pid in pids:
            _, st = os.waitpid(pid, 0)
            status.append(os.waitstatus_to_exitcode(st))
        print(json.dumps({"status": status}), flush=True)


if __name__ == "__main__":
    main()
