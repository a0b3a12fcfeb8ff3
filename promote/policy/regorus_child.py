"""The regorus engine's child process: one evaluation, killed by the parent at its deadline.

Reads one request on stdin: a line of JSON, `{"files": {name: rego}, "queries": [...]}`,
then the input's JSON text to the end (not escaped into a string: it may be tens of
MB), and writes one JSON answer on stdout: `{"values": [value | null, ...]}` (null for an
undefined query, in the order asked), or `{"error": "<message>"}`. Each query is a rule,
`data.<package>.<rule>`, never the package document: regorus 0.13 mis-evaluates a rule
read through the package when the package spans several modules.

Run in a process of its own, not a thread, so that a slow policy can be killed: a
regorus evaluation cannot be interrupted from Python, and a thread left running keeps
the interpreter alive past its deadline. It imports nothing of the project but this
module, and runs as a file under `python -I -S` given the directory regorus is in,
so that it starts fast (no `site`, no .pth files).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def engine_error_text(e: object) -> str:
    """An engine error in one line: where it points and what it says.

    Regorus puts the location first (`--> file:line:col`), then the source line, then
    `error: <message>`; a first line alone would say where, not what.
    """
    lines = [ln.strip() for ln in str(e).strip().splitlines()]
    lines = lines[: lines.index("Stack backtrace:")] if "Stack backtrace:" in lines else lines
    where = next((ln[4:] for ln in lines if ln.startswith("--> ")), "")
    what = next((ln for ln in lines if ln.startswith("error:")), "")
    if not what:
        what = next((ln for ln in lines if ln and not ln.startswith(("-->", "|"))), "")
    what = what.removeprefix("error:").strip() or type(e).__name__
    return f"{where}: {what}" if where else what


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    os.environ["RUST_BACKTRACE"] = "0"
    import regorus

    engine = regorus.Engine()
    values: list[Any] = []
    try:
        for name, text in sorted(request["files"].items()):
            engine.add_policy(name, text)
        engine.set_input_json(request["input"])
        for query in request["queries"]:
            answer = json.loads(engine.eval_query_as_json(query))
            results = answer.get("result") or []
            values.append(results[0]["expressions"][0]["value"] if results else None)
    except (RuntimeError, ValueError) as e:  # what regorus raises for policy errors
        return {"error": engine_error_text(e)}
    return {"values": values}


def main() -> None:
    if len(sys.argv) > 1:  # run as a file with -I -S: where regorus is (engines._child_command)
        sys.path.insert(0, sys.argv[1])
    head, _, input_json = sys.stdin.buffer.read().partition(b"\n")
    request = json.loads(head)
    request["input"] = input_json.decode()
    sys.stdout.buffer.write(json.dumps(evaluate(request)).encode())


if __name__ == "__main__":
    main()
