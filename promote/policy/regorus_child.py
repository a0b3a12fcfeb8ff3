"""The regorus engine's child process: one evaluation, killed by the parent at its deadline.

Reads one JSON request on stdin, `{"files": {name: rego}, "queries": [...], "input": "<json>"}`,
and writes one JSON answer on stdout: `{"values": [value | null, ...]}` (null for an
undefined query, in the order asked), or `{"error": "<message>"}`. Each query is a rule,
`data.<package>.<rule>`, never the package document: regorus 0.13 mis-evaluates a rule
read through the package when the package spans several modules.

Run in a process of its own, not a thread, so that a slow policy can be killed: a
regorus evaluation cannot be interrupted from Python, and a thread left running keeps
the interpreter alive past its deadline.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def evaluate(request: dict[str, Any]) -> dict[str, Any]:
    os.environ["RUST_BACKTRACE"] = "0"
    import regorus

    from promote.policy.engines import engine_error_text

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
    request = json.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(json.dumps(evaluate(request)).encode())


if __name__ == "__main__":
    main()
