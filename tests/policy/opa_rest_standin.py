"""A STAND-IN for an OPA server's REST API, evaluating with real OPA v1.20.2.

Not OPA's own server: the subset of its REST API that promote's `opa-rest` engine
calls, and that a test needs to load a policy, answered on loopback by the OPA Go
library embedded in PyPI `opa-golib-python-bindings` 0.4.4, in OPA's response format
and status codes:

- `GET /health` -> 200 `{}`;
- `GET /v1/config` -> 200 `{"result": {"labels": {"id", "version"}, ...}}`;
- `GET /v1/policies` -> 200 `{"result": [{"id", "raw"}, ...]}` (OPA adds each
  module's `ast`, which the engine does not read, so the stand-in leaves it out);
- `GET /v1/policies/<id>` -> 200 `{"result": {"id", "raw"}}`, or 404
  `resource_not_found`;
- `PUT /v1/policies/<id>` (the Rego text) -> 200 `{}`, or 400 `invalid_parameter`
  with the compile errors;
- `DELETE /v1/policies/<id>` -> 200 `{}`, or 404;
- `POST /v1/data/<path>` `{"input": ...}` -> 200 `{"result": value}`, 200 `{}` when
  undefined, 400 `invalid_parameter` for a body that is not JSON, 500 `internal_error`
  with the evaluation's errors.

The bridge always evaluates with strict built-in errors, so a data request without
`?strict-builtin-errors=true` is refused (400) rather than answered differently from
OPA. With `--token T` every request needs `Authorization: Bearer T` (else 401
`unauthorized`), as OPA with `--authentication=token` and an authorization policy
that checks it. With `--log FILE` each request is appended to FILE as one JSON line
(`method`, `path`, `authorization`), so tests can see what was sent.

Run: `python opa_rest_standin.py [--token T] [--log FILE]`; it prints its URL
(`http://127.0.0.1:PORT`) on the first line of stdout, then serves until killed.
`StandinServer` does that from a test.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from typing import Any

VERSION = "1.20.2"  # the OPA the bindings embed
LOCATED = re.compile(
    r"^(?:\d+ errors? occurred: )?(?P<file>[^\n:]+):(?P<row>\d+): (?P<code>\w+): (?P<message>[^\n]*)"
)


class _State:
    """The modules the server holds, and an engine compiled from them."""

    def __init__(self) -> None:
        from opa_bindings import OpaEngine

        self.lock = threading.Lock()
        self.modules: dict[str, str] = {}
        self.engine = OpaEngine()

    def compile(self, modules: dict[str, str]) -> Any:
        from opa_bindings import OpaEngine

        engine = OpaEngine()
        for ident, text in sorted(modules.items()):
            engine.add_policy(ident, text)
        engine.eval_query("__standin_value := true")  # compile every module now
        return engine


def _error(code: str, message: str) -> dict[str, Any]:
    """OPA's error object from the bridge's `file:row: code: message` text."""
    m = LOCATED.match(message)
    if not m:
        return {"code": code, "message": message}
    return {
        "code": m["code"],
        "message": m["message"],
        "location": {"file": m["file"], "row": int(m["row"]), "col": 1},
    }


class _Handler(http.server.BaseHTTPRequestHandler):
    state: _State
    token: str | None = None
    log_path: str | None = None
    instance_id = "stand-in"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _admit(self) -> tuple[str, dict[str, list[str]]] | None:
        """The path and query of an authorized request, logged; None once refused."""
        auth = self.headers.get("Authorization")
        if self.log_path:
            line = {"method": self.command, "path": self.path, "authorization": auth}
            with open(self.log_path, "a") as f:
                f.write(json.dumps(line) + "\n")
        if self.token is not None and auth != f"Bearer {self.token}":
            self._body()
            self._send(401, {"code": "unauthorized", "message": "the request was unauthorized"})
            return None
        url = urllib.parse.urlsplit(self.path)
        return url.path, urllib.parse.parse_qs(url.query)

    def do_GET(self) -> None:
        admitted = self._admit()
        if admitted is None:
            return
        path, _ = admitted
        if path == "/health":
            self._send(200, {})
        elif path == "/v1/config":
            labels = {"id": self.instance_id, "version": VERSION}
            self._send(200, {"result": {"labels": labels, "default_decision": "/system/main"}})
        elif path == "/v1/policies":
            with self.state.lock:
                listed = [{"id": i, "raw": t} for i, t in sorted(self.state.modules.items())]
            self._send(200, {"result": listed})
        elif path.startswith("/v1/policies/"):
            ident = urllib.parse.unquote(path[len("/v1/policies/") :])
            with self.state.lock:
                text = self.state.modules.get(ident)
            if text is None:
                self._not_found(ident)
            else:
                self._send(200, {"result": {"id": ident, "raw": text}})
        else:
            self._send(404, {"code": "resource_not_found", "message": f"stand-in: no {path}"})

    def _not_found(self, ident: str) -> None:
        message = f'storage_not_found_error: policy id "{ident}"'
        self._send(404, {"code": "resource_not_found", "message": message})

    def do_PUT(self) -> None:
        admitted = self._admit()
        text = self._body().decode("utf-8", errors="replace")
        if admitted is None:
            return
        path, _ = admitted
        if not path.startswith("/v1/policies/"):
            self._send(404, {"code": "resource_not_found", "message": f"stand-in: no PUT {path}"})
            return
        from opa_bindings import OpaError

        ident = urllib.parse.unquote(path[len("/v1/policies/") :])
        with self.state.lock:
            modules = {**self.state.modules, ident: text}
            try:
                engine = self.state.compile(modules)
            except OpaError as e:
                message = "error(s) occurred while compiling module(s)"
                errors = [_error(e.code, e.message)]
                self._send(400, {"code": "invalid_parameter", "message": message, "errors": errors})
                return
            self.state.modules, self.state.engine = modules, engine
        self._send(200, {})

    def do_DELETE(self) -> None:
        from opa_bindings import OpaError

        admitted = self._admit()
        if admitted is None:
            return
        ident = urllib.parse.unquote(admitted[0][len("/v1/policies/") :])
        with self.state.lock:
            if not admitted[0].startswith("/v1/policies/") or ident not in self.state.modules:
                self._not_found(ident)
                return
            modules = {k: v for k, v in self.state.modules.items() if k != ident}
            try:
                engine = self.state.compile(modules)
            except OpaError as e:
                message = "error(s) occurred while compiling module(s)"
                errors = [_error(e.code, e.message)]
                self._send(400, {"code": "invalid_parameter", "message": message, "errors": errors})
                return
            self.state.modules, self.state.engine = modules, engine
        self._send(200, {})

    def do_POST(self) -> None:
        admitted = self._admit()
        raw = self._body()
        if admitted is None:
            return
        path, query = admitted
        if not path.startswith("/v1/data"):
            self._send(404, {"code": "resource_not_found", "message": f"stand-in: no POST {path}"})
            return
        if query.get("strict-builtin-errors") != ["true"]:
            message = "stand-in: evaluates with ?strict-builtin-errors=true only"
            self._send(400, {"code": "invalid_parameter", "message": message})
            return
        try:
            doc = json.loads(raw) if raw else {}
            if not isinstance(doc, dict):
                raise ValueError("body must be an object")
        except ValueError as e:
            self._send(
                400, {"code": "invalid_parameter", "message": f"body contains malformed input: {e}"}
            )
            return
        from opa_bindings import OpaError

        parts = [urllib.parse.unquote(p) for p in path[len("/v1/data") :].split("/") if p]
        ref = "data" + "".join(f"[{json.dumps(p)}]" for p in parts)
        kwargs = {"input": doc["input"]} if "input" in doc else {}
        with self.state.lock:
            engine = self.state.engine
        try:
            rows = engine.eval_query(f"__standin_value := {ref}", **kwargs)
        except OpaError as e:
            message = "error(s) occurred while evaluating query"
            errors = [_error(e.code, e.message)]
            self._send(500, {"code": "internal_error", "message": message, "errors": errors})
            return
        self._send(200, {"result": rows[0]["__standin_value"]} if rows else {})


def serve(token: str | None, log_path: str | None) -> None:
    handler = type(
        "Handler",
        (_Handler,),
        {"state": _State(), "token": token, "log_path": log_path, "instance_id": str(os.getpid())},
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


class StandinServer:
    """The stand-in in a process of its own, for a test: start, load policies, stop."""

    def __init__(self, token: str | None = None, log_path: str | None = None) -> None:
        args = [sys.executable, os.path.abspath(__file__)]
        if token is not None:
            args += ["--token", token]
        if log_path is not None:
            args += ["--log", log_path]
        self.token = token
        self.log_path = log_path
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError("the OPA REST stand-in did not start")

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        """One request with the server's token; (status, decoded JSON body)."""
        import urllib.error

        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def load(self, files: dict[str, str]) -> None:
        """Replace every module with `files` (id = file name), as an operator would."""
        status, listed = self.call("GET", "/v1/policies")
        for p in listed["result"]:
            self.call("DELETE", "/v1/policies/" + urllib.parse.quote(p["id"], safe=""))
        for name, text in sorted(files.items()):
            status, answer = self.call("PUT", "/v1/policies/" + name, text.encode())
            if status != 200:
                raise RuntimeError(f"PUT {name}: {status} {answer}")

    def requests(self) -> list[dict[str, Any]]:
        if not self.log_path or not os.path.exists(self.log_path):
            return []
        with open(self.log_path) as f:
            return [json.loads(line) for line in f]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def main(argv: list[str]) -> int:
    token = log_path = None
    while argv:
        a = argv.pop(0)
        if a == "--token":
            token = argv.pop(0)
        elif a == "--log":
            log_path = argv.pop(0)
        else:
            print(f"opa rest stand-in: unknown argument {a}", file=sys.stderr)
            return 2
    serve(token, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
