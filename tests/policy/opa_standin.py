"""A STAND-IN for the `opa` executable, evaluating with real OPA v1.20.2.

Not OPA's own binary: the subset of its command line that promote calls, answered by
the OPA Go library embedded in PyPI `opa-golib-python-bindings` 0.4.4:

- `version`;
- `eval --format json --strict-builtin-errors --stdin-input --data FILE... QUERY`, in
  `opa eval`'s JSON output and exit codes (0 with a result set, even an empty one; 1 on
  an error, with `{"errors": [...]}` on stdout);
- `test --format json DIR`, in `opa test`'s JSON output (one object per test:
  `location`, `package`, `name`, `duration`, and `fail`, `error` or `skip` when so) and
  exit codes (0 when every test passes or is skipped, 2 when any fails or errors, 1
  when the policy does not load, its message on stderr).

That bridge always evaluates with strict built-in errors, so `eval` refuses to run
without `--strict-builtin-errors` rather than answer differently from OPA, and in
`test` a built-in error is a test error. The bridge has no parser API: `test` finds
test rules (`test_*`, `todo_test_*`, not functions) by their heads at the start of a
line, as `opa fmt` writes them, and reports a test defined several times once.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

VERSION = "1.20.2"  # the OPA the bindings embed


def main(argv: list[str]) -> int:
    if argv[:1] == ["version"]:
        print(f"Version: {VERSION}\nBuild Commit: stand-in (opa-golib-python-bindings 0.4.4)")
        return 0
    if argv[:1] == ["test"]:
        return test(argv[1:])
    if argv[:1] != ["eval"]:
        print(f"opa stand-in: unsupported command {argv[:1]}", file=sys.stderr)
        return 2
    args, files, query, stdin_input, strict = argv[1:], [], None, False, False
    while args:
        a = args.pop(0)
        if a == "--format":
            if args.pop(0) != "json":
                print("opa stand-in: only --format json", file=sys.stderr)
                return 2
        elif a == "--strict-builtin-errors":
            strict = True
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
    if not strict:
        print("opa stand-in: evaluates with --strict-builtin-errors only", file=sys.stderr)
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


PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.M)
TEST_HEAD = re.compile(r"^((?:todo_)?test_\w+)\b(?!\s*\()", re.M)
LOCATED = re.compile(
    r"^(?:\d+ errors? occurred: )?(?P<file>[^\n:]+):(?P<row>\d+): (?P<code>\w+): (?P<message>[^\n]*)"
)


def test(argv: list[str]) -> int:
    """`opa test --format json DIR`: every test rule of every .rego file under DIR."""
    if len(argv) != 3 or argv[:2] != ["--format", "json"]:
        print("opa stand-in: only test --format json DIR", file=sys.stderr)
        return 2
    from opa_bindings import OpaEngine, OpaError

    root = argv[2]
    files = sorted(
        os.path.join(d, f) for d, _, names in os.walk(root) for f in names if f.endswith(".rego")
    )
    engine = OpaEngine()
    tests: list[tuple[str, str, str, int]] = []
    seen: set[tuple[str, str]] = set()
    try:
        for path in files:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            engine.add_policy(path, text)
            package = PACKAGE.search(text)
            for head in TEST_HEAD.finditer(text) if package else ():
                key = (package.group(1), head.group(1)) if package else ("", "")
                if key not in seen:
                    seen.add(key)
                    row = text.count("\n", 0, head.start()) + 1
                    tests.append((key[0], key[1], path, row))
        engine.eval_query("__standin_value := true")  # compile every module now
    except OpaError as e:
        print(e.message, file=sys.stderr)
        return 1
    results, failed = [], False
    for package, name, path, row in tests:
        doc: dict[str, object] = {
            "location": {"file": path, "row": row, "col": 1},
            "package": f"data.{package}",
            "name": name,
        }
        start = time.perf_counter_ns()
        if name.startswith("todo_"):
            doc["skip"] = True
        else:
            try:
                rows = engine.eval_query(f"__standin_value := data.{package}.{name}")
            except OpaError as e:
                doc["error"] = _error(e.code, e.message)
            else:
                if not rows or rows[0]["__standin_value"] is not True:
                    doc["fail"] = True
        doc["duration"] = time.perf_counter_ns() - start
        failed = failed or "fail" in doc or "error" in doc
        results.append(doc)
    print(json.dumps(results, indent=2))
    return 2 if failed else 0


def _error(code: str, message: str) -> dict[str, object]:
    """OPA's error object from the bridge's `file:row: code: message` text."""
    m = LOCATED.match(message)
    if not m:
        return {"code": code, "message": message}
    return {
        "code": m["code"],
        "message": m["message"],
        "location": {"file": m["file"], "row": int(m["row"]), "col": 1},
    }


def install(directory: str) -> str:
    """Write an `opa` executable into `directory` that runs this stand-in; its path."""

    path = os.path.join(directory, "opa")
    with open(path, "w") as f:
        f.write(f'#!/bin/sh\nexec "{sys.executable}" "{os.path.abspath(__file__)}" "$@"\n')
    os.chmod(path, 0o755)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
