"""A STAND-IN for the `opa` executable, evaluating with real OPA v1.20.2.

Not OPA's own binary: the subset of its command line that promote calls (`version`,
`eval --format json --stdin-input --data FILE... QUERY`), answered by the OPA Go
library embedded in PyPI `opa-golib-python-bindings` 0.4.4, in `opa eval`'s JSON output
format and exit codes (0 with a result set, even an empty one; 1 on an error, with
`{"errors": [...]}` on stdout). That bridge always evaluates with strict built-in
errors (`--strict-builtin-errors`), so a built-in error is an eval error here.
"""

from __future__ import annotations

import json
import os
import sys

VERSION = "1.20.2"  # the OPA the bindings embed


def main(argv: list[str]) -> int:
    if argv[:1] == ["version"]:
        print(f"Version: {VERSION}\nBuild Commit: stand-in (opa-golib-python-bindings 0.4.4)")
        return 0
    if argv[:1] != ["eval"]:
        print(f"opa stand-in: unsupported command {argv[:1]}", file=sys.stderr)
        return 2
    args, files, query, stdin_input = argv[1:], [], None, False
    while args:
        a = args.pop(0)
        if a == "--format":
            if args.pop(0) != "json":
                print("opa stand-in: only --format json", file=sys.stderr)
                return 2
        elif a in ("--data", "-d"):
            files.append(args.pop(0))
        elif a in ("--stdin-input", "-I"):
            stdin_input = True
        elif a.startswith("-"):
            print(f"opa stand-in: unsupported flag {a}", file=sys.stderr)
            return 2
        else:
            query = a
    if query is None:
        print("opa stand-in: no query", file=sys.stderr)
        return 2
    from opa_bindings import OpaEngine, OpaError

    engine = OpaEngine()
    try:
        for path in files:
            with open(path, encoding="utf-8") as f:
                engine.add_policy(path, f.read())
        kwargs = {"input": json.loads(sys.stdin.buffer.read())} if stdin_input else {}
        rows = engine.eval_query(f"__standin_value := ({query})", **kwargs)
    except OpaError as e:
        print(json.dumps({"errors": [{"code": e.code, "message": e.message}]}, indent=2))
        return 1
    result = [{"expressions": [{"value": row["__standin_value"], "text": query}]} for row in rows]
    print(json.dumps({"result": result} if result else {}, indent=2))
    return 0


def install(directory: str) -> str:
    """Write an `opa` executable into `directory` that runs this stand-in; its path."""

    path = os.path.join(directory, "opa")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" "{os.path.abspath(__file__)}" "$@"\n')
    os.chmod(path, 0o755)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
