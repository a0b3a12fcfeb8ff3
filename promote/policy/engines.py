"""The policy gate: Rego engines behind one small protocol, failing closed.

Engines:
- `regorus`: embedded (the default), evaluated in a child process of its own
  (`promote.policy.regorus_child`) that is killed at the deadline.
- `opa`: the `opa eval` command line, when a binary is configured or on PATH.
- `opa-rest`: OPA's REST Data API, `POST <url>/v1/data/<package path>/<rule>`, on a
  server checked to hold exactly the pinned bundle (ADR 11).

Every engine asks the same two rules, `data.<package>.allow` and `data.<package>.deny`,
never the package document (regorus 0.13 mis-evaluates a rule read through the package
when the package spans several modules). `decide` turns anything short of
`allow == true` with an empty `deny` into a deny: an engine error, a missing or
unparsable policy, an undefined result, a result of the wrong type. The reasons say
which. Every engine evaluates with strict built-in errors (regorus always does; `opa
eval --strict-builtin-errors`; `?strict-builtin-errors=true` over REST): a built-in's
error is an engine error, hence a deny, never a silently undefined deny rule. A timeout
is not a deny but an engine error (EngineTimeout, exit 1): a decision never depends on
load.
"""

from __future__ import annotations

import abc
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import attrs

from cas.digest import ObjectRef, hash_bytes
from cas.errors import EXIT_INTERNAL
from promote.canonical import canonical
from promote.errors import InvalidDocument, PolicyError, PromoteError, WorkspaceError
from promote.policy.regorus_child import engine_error_text

__all__ = [
    "DECISION_SCHEMA",
    "Decision",
    "Engine",
    "EngineTimeout",
    "check_input",
    "PolicyBundle",
    "decide",
    "engine_error_text",
    "engine_from_config",
    "load_bundle",
]

DECISION_SCHEMA = "promote-decision/v1"
BUNDLE_SCHEMA = "promote-policy/v1"
DEFAULT_TIMEOUT = 30.0


@attrs.frozen
class PolicyBundle:
    """The policy files as evaluated: relative path -> Rego text."""

    files: Mapping[str, str]
    package: str = "promote"

    def encode(self) -> bytes:
        return canonical(
            {"schema": BUNDLE_SCHEMA, "package": self.package, "files": dict(self.files)}
        )

    def ref(self) -> ObjectRef:
        return hash_bytes(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> PolicyBundle:
        doc = json.loads(data)
        if doc.get("schema") != BUNDLE_SCHEMA:
            raise PolicyError("not a promote-policy/v1 bundle")
        return cls(dict(doc["files"]), doc["package"])


def load_bundle(policy_dir: Path, package: str = "promote", tests: bool = False) -> PolicyBundle:
    """Every `.rego` file under `policy_dir` (test files only when `tests`).

    Raises:
        PolicyError: no directory, no policy files, or an unreadable file.
    """
    if not policy_dir.is_dir():
        raise PolicyError(f"policy directory {policy_dir} is missing")
    files: dict[str, str] = {}
    for path in sorted(policy_dir.rglob("*.rego")):
        rel = path.relative_to(policy_dir).as_posix()
        if rel.endswith("_test.rego") and not tests:
            continue
        try:
            files[rel] = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PolicyError(f"policy file {rel}: unreadable: {e}") from None
    if not files:
        raise PolicyError(f"no policy files (*.rego) in {policy_dir}")
    return PolicyBundle(files, package)


@attrs.frozen
class Decision:
    """The gate's verdict and where it came from."""

    allow: bool
    deny: tuple[str, ...]
    engine: str
    engine_version: str
    policy: ObjectRef
    input: ObjectRef

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": DECISION_SCHEMA,
            "allow": self.allow,
            "deny": list(self.deny),
            "engine": {"name": self.engine, "version": self.engine_version},
            "policy": self.policy.to_dict(),
            "input": self.input.to_dict(),
        }

    def encode(self) -> bytes:
        return canonical(self.to_dict())


class EngineTimeout(PromoteError):
    """The engine did not answer before `engine.timeout`: an engine error, not a deny.

    A decision must not depend on load, so a timeout records no decision: the run
    fails with exit 1 and writes nothing, and the same capsule can be run again.
    """

    exit_code = EXIT_INTERNAL


class Engine(abc.ABC):
    """A Rego engine: evaluate the rules `data.<package>.allow` and `.deny` for an input.

    Every engine enforces `timeout` itself, killing or abandoning the evaluation at the
    deadline, and raises EngineTimeout then.
    """

    name: str
    timeout: float = DEFAULT_TIMEOUT

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version, recorded in every decision."""

    @abc.abstractmethod
    def evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        """`{"allow": value, "deny": value}`, a key left out when its rule is undefined.
        `input_json`: the input's JSON text (the gate passes its canonical bytes).

        Raises:
            PolicyError: on any engine failure.
            EngineTimeout: past `timeout` seconds.
        """


def _utf8(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode()


def dist_version(name: str) -> str:
    """The installed version of distribution `name`, as `importlib.metadata.version`
    gives it: the `Version:` of the first `<name>-*.dist-info/METADATA` on `sys.path`.
    Read here because importing `importlib.metadata` costs more than the rest of a
    one-target dry run's decision; anything unusual (no such directory, an egg, a
    zip) is left to `importlib.metadata` itself."""
    prefix = name.replace("-", "_").replace(".", "_").lower() + "-"
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for dist in names:
            if dist.lower().startswith(prefix) and dist.endswith(".dist-info"):
                try:
                    with open(os.path.join(entry, dist, "METADATA"), encoding="utf-8") as f:
                        for line in f:
                            if line.startswith("Version:"):
                                return line[len("Version:") :].strip()
                            if not line.strip():
                                break
                except OSError:
                    pass
                break
        else:
            continue
        break
    from importlib.metadata import version

    return version(name)


def rule_queries(package: str) -> tuple[str, str]:
    """The two rules every engine asks: never the package document itself."""
    return f"data.{package}.allow", f"data.{package}.deny"


def _request_file() -> BinaryIO:
    """An anonymous file for the child's request, gone with its last descriptor: a
    memfd where there is one (Linux; nothing on disk, and no `tempfile`, whose import
    is 4 ms of every promote), else an unnamed temporary file."""
    if hasattr(os, "memfd_create"):
        return os.fdopen(os.memfd_create("promote-regorus", os.MFD_CLOEXEC), "w+b")
    import tempfile

    return tempfile.TemporaryFile(prefix="promote-regorus-")


def _child_command() -> list[str]:
    """The regorus child's command line: its file run by this interpreter isolated
    (`-I`: no PYTHON* variables, no user site) and without `site` (`-S`: no .pth
    files, about half of a bare interpreter's start-up), given the one directory it
    imports regorus from: the one this process would import it from. Where regorus
    is not found, `-m` in the usual environment, whose import error the answer carries.
    """
    from importlib.machinery import PathFinder  # importlib.util costs 2 ms to import

    from promote.policy import regorus_child

    spec = PathFinder.find_spec("regorus")
    if spec is None or spec.origin is None:
        return [sys.executable, "-m", "promote.policy.regorus_child"]
    where = Path(spec.origin).parent
    if spec.submodule_search_locations is not None:  # a package: its parent holds it
        where = where.parent
    return [sys.executable, "-I", "-S", str(regorus_child.__file__), str(where)]


class RegorusEngine(Engine):
    """The embedded engine (gordon-to-regorus), in a child process killed at the deadline."""

    name = "regorus"

    def __init__(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout

    def version(self) -> str:
        return dist_version("gordon-to-regorus")

    def evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        # The request: one line of JSON (files, queries), then the input's JSON as it
        # is, from a temporary file rather than a pipe: an input of 100,000 targets is
        # tens of MB, and is neither copied into the request nor escaped into a string.
        head = json.dumps(
            {"files": dict(bundle.files), "queries": list(rule_queries(bundle.package))}
        )
        env = {**os.environ, "RUST_BACKTRACE": "0"}
        try:
            with _request_file() as request:
                request.write(head.encode() + b"\n")
                request.write(_utf8(input_json))
                request.seek(0)
                child = subprocess.Popen(
                    _child_command(),
                    stdin=request,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                )
        except OSError as e:
            raise PolicyError(f"regorus: cannot start the evaluation process: {e}") from None
        try:
            out, err = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise EngineTimeout(
                f"policy engine regorus timed out after {self.timeout:g}s (engine.timeout)"
            ) from None
        try:
            answer = json.loads(out) if child.returncode == 0 else None
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            tail = err.decode(errors="replace").strip().splitlines()
            why = tail[-1] if tail else f"exit status {child.returncode}"
            raise PolicyError(f"regorus: the evaluation process failed: {why}")
        if "error" in answer:
            raise PolicyError(f"regorus: {answer['error']}")
        return {
            key: value
            for key, value in zip(("allow", "deny"), answer["values"], strict=True)
            if value is not None
        }


class OpaCliEngine(Engine):
    """`opa eval`, for users who run a real OPA binary."""

    name = "opa"

    def __init__(self, binary: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        import shutil

        found = binary or shutil.which("opa")
        if not found:
            raise WorkspaceError("engine 'opa' needs an opa binary on PATH or in the config")
        self.binary = found
        self.timeout = timeout

    def version(self) -> str:
        try:
            out = subprocess.run(
                [self.binary, "version"], capture_output=True, timeout=self.timeout, check=True
            ).stdout.decode()
        except subprocess.TimeoutExpired:
            raise EngineTimeout(f"opa version timed out after {self.timeout:g}s") from None
        except (OSError, subprocess.SubprocessError) as e:
            raise PolicyError(f"opa version: {e}") from None
        for line in out.splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        allow, deny = rule_queries(bundle.package)
        # One query, two rules: each collected into a list, empty when undefined.
        query = f'{{"allow": [x | x := {allow}], "deny": [x | x := {deny}]}}'
        import tempfile

        with tempfile.TemporaryDirectory(prefix="promote-opa-") as d:
            args = [self.binary, "eval", "--format", "json", "--strict-builtin-errors"]
            args.append("--stdin-input")
            for name, text in sorted(bundle.files.items()):
                path = Path(d, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                args += ["--data", str(path)]
            args.append(query)
            try:
                r = subprocess.run(
                    args, input=_utf8(input_json), capture_output=True, timeout=self.timeout
                )
            except subprocess.TimeoutExpired:
                raise EngineTimeout(
                    f"policy engine opa timed out after {self.timeout:g}s (engine.timeout)"
                ) from None
            except OSError as e:
                raise PolicyError(f"opa eval: {e}") from None
        if r.returncode != 0:
            raise PolicyError(f"opa eval failed: {_opa_error(r.stdout, r.stderr)}")
        try:
            value = _query_value(json.loads(r.stdout))
        except ValueError as e:
            raise PolicyError(f"opa eval: unreadable output: {e}") from None
        if not isinstance(value, dict):
            return {}
        return {
            k: v[0]
            for k, v in value.items()
            if k in ("allow", "deny") and isinstance(v, list) and len(v) == 1
        }


class OpaRestEngine(Engine):
    """OPA's REST Data API, checked to serve exactly the pinned bundle (ADR 11).

    Before and after it asks the two rules, the engine reads what the server holds
    (`GET /v1/policies`) and refuses, as an engine error, any difference from the
    bundle it records: a module missing, changed, or not in the bundle. The version
    recorded is the server's own (`GET /v1/config`, `result.labels.version`).
    Evaluation asks for strict built-in errors, as regorus evaluates. Redirects are not
    followed, and a loopback server is reached without the environment's proxy, so the
    token goes nowhere but `url`. No request is made before `decide` asks.
    """

    name = "opa-rest"

    def __init__(
        self, url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        import urllib.error
        import urllib.parse
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        handlers: list[urllib.request.BaseHandler] = [_no_redirect()]
        host = urllib.parse.urlsplit(self.url).hostname or ""
        if _is_loopback(host):
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise PolicyError(
                f"OPA at {self.url}: {method} {path.split('?')[0]}: HTTP {e.code}{_opa_message(e)}"
            ) from None
        except TimeoutError:
            raise EngineTimeout(f"OPA at {self.url} timed out after {self.timeout:g}s") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            if isinstance(getattr(e, "reason", None), TimeoutError):
                raise EngineTimeout(
                    f"OPA at {self.url} timed out after {self.timeout:g}s"
                ) from None
            raise PolicyError(f"OPA at {self.url} is unreachable: {_first_line(e)}") from None
        try:
            return json.loads(raw)
        except ValueError:
            where = path.split("?")[0]
            raise PolicyError(f"OPA at {self.url}: {method} {where}: not a JSON answer") from None

    def version(self) -> str:
        answer = _with_deadline(
            self.timeout, f"OPA at {self.url}", self._request, "GET", "/v1/config"
        )
        labels = answer.get("result", {}).get("labels") if isinstance(answer, dict) else None
        found = labels.get("version") if isinstance(labels, dict) else None
        if not isinstance(found, str) or not found:
            raise PolicyError(
                f"OPA at {self.url} did not say its version (GET /v1/config: no"
                " result.labels.version)"
            )
        return found

    def evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        value: dict[str, Any] = _with_deadline(
            self.timeout, f"OPA at {self.url}", self._evaluate, bundle, input_json
        )
        return value

    def _check_served(self, bundle: PolicyBundle) -> None:
        """Refuse unless the server holds exactly the bundle's modules (by their text)."""
        answer = self._request("GET", "/v1/policies")
        served = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(served, list) or not all(
            isinstance(p, dict) and isinstance(p.get("raw"), str) for p in served
        ):
            raise PolicyError(f"OPA at {self.url}: GET /v1/policies: not a list of policies")
        want = Counter(bundle.files.values())
        got = Counter(str(p["raw"]) for p in served)
        if want == got:
            return
        missing = [n for n, t in sorted(bundle.files.items()) if got[t] < want[t]]
        extra = sorted(str(p.get("id")) for p in served if got[p["raw"]] > want[p["raw"]])
        parts = []
        if missing:
            parts.append("missing or changed: " + ", ".join(missing[:5]))
        if extra:
            parts.append("not in the bundle: " + ", ".join(extra[:5]))
        raise PolicyError(
            f"OPA at {self.url} does not serve the pinned policy {bundle.ref().digest}"
            f" ({'; '.join(parts)})"
        )

    def _evaluate(self, bundle: PolicyBundle, input_json: str | bytes) -> dict[str, Any]:
        self._check_served(bundle)
        body = b'{"input":' + _utf8(input_json) + b"}"
        out: dict[str, Any] = {}
        for key, query in zip(("allow", "deny"), rule_queries(bundle.package), strict=True):
            path = "/v1/data/" + query[5:].replace(".", "/") + "?strict-builtin-errors=true"
            answer = self._request("POST", path, body)
            if not isinstance(answer, dict):
                raise PolicyError(f"OPA at {self.url}: POST {path}: not a JSON object")
            if "result" in answer:
                out[key] = answer["result"]
        self._check_served(bundle)  # and still the same once both rules are answered
        return out


def _no_redirect() -> Any:
    """A handler that follows no redirect: the token and the input go to `engine.url`
    and nowhere else. (urllib.request is imported here, for the REST engine only: its
    import, http.client and ssl, is a good part of a plain `promote`'s start-up.)"""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return NoRedirect()


def _opa_message(e: Any) -> str:
    """`: <message>` of OPA's error body (`{"code", "message", "errors": [...]}`), if any."""
    try:
        doc = json.loads(e.read(65536))
    except (OSError, ValueError):
        return ""
    if not isinstance(doc, dict):
        return ""
    errors = doc.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    if isinstance(first, dict) and isinstance(first.get("message"), str):
        return f": {_first_line(first['message'])}"
    message = doc.get("message")
    return f": {_first_line(message)}" if isinstance(message, str) and message else ""


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_opa_url(url: str, insecure: bool = False) -> str:
    """`url` if the REST engine may use it: https, or http to loopback unless `insecure`.

    Raises:
        WorkspaceError: (exit 2) another scheme, credentials in the URL, or plain http
            to a host that is not loopback without `engine.insecure`.
    """
    import urllib.parse  # the REST engine's only: not on the embedded engine's path

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WorkspaceError(f"engine.url {url!r}: want http(s)://host[:port]")
    if parts.username or parts.password:
        raise WorkspaceError(
            "engine.url carries credentials: remove them; the bearer token comes from"
            " PROMOTE_OPA_TOKEN"
        )
    if parts.query or parts.fragment:
        raise WorkspaceError(f"engine.url {url!r}: no query or fragment, please")
    if parts.scheme == "http" and not insecure and not _is_loopback(parts.hostname):
        raise WorkspaceError(
            f"engine.url {url}: plain http only to loopback; use https, or set"
            " engine.insecure to true"
        )
    return url


def _with_deadline(timeout: float, what: str, fn: Any, *args: Any) -> Any:
    """`fn(*args)` on a daemon thread, abandoned at the deadline (it cannot hold the exit)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except (PolicyError, EngineTimeout) as e:
            box["error"] = e

    import threading

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise EngineTimeout(f"{what} timed out after {timeout:g}s (engine.timeout)")
    if "error" in box:
        raise box["error"]
    return box["value"]


MAX_SAFE_INTEGER = 2**53 - 1


def check_input(doc: Any, where: str = "input") -> None:
    """Refuse an input that engines would read differently: integers of 2^53 and more.

    OPA reads JSON numbers as float64 past 2^53, regorus does not, so such an input
    could get two answers. The gate never builds one (sizes are bounded far below).

    Raises:
        InvalidDocument: (exit 2) naming the first such number.
    """
    stack: list[tuple[Any, str]] = [(doc, where)]
    while stack:
        value, path = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and abs(value) > MAX_SAFE_INTEGER:
            raise InvalidDocument(f"{path}: integer {value} is beyond 2^53 - 1 (not exact in JSON)")
        if isinstance(value, dict):
            stack.extend((v, f"{path}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(value))


def _opa_error(stdout: bytes, stderr: bytes) -> str:
    """The message of a failed `opa eval`: its JSON `errors`, else its first line."""
    try:
        doc = json.loads(stdout)
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            loc = first.get("location") or {}
            where = f"{loc.get('file', '')}:{loc.get('row', '')}: " if loc else ""
            return f"{where}{first.get('message', '')}".strip()
    except ValueError:
        pass
    return _first_line(stderr.decode(errors="replace") or stdout.decode(errors="replace"))


def _first_line(e: object) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _query_value(answer: Any) -> Any:
    """The value of a one-expression query answer; None when undefined."""
    results = answer.get("result") if isinstance(answer, dict) else None
    if not results:
        return None
    try:
        return results[0]["expressions"][0]["value"]
    except (KeyError, IndexError, TypeError):
        return None


def _verdict(value: Any) -> tuple[bool, tuple[str, ...]]:
    """Read allow/deny from the rules' values, failing closed on anything odd."""
    if not isinstance(value, dict) or not value:
        return False, ("policy result is undefined (no 'allow' and no 'deny' rule)",)
    deny = value.get("deny", [])
    if not isinstance(deny, list) or not all(isinstance(d, str) for d in deny):
        return False, ("policy 'deny' is not a set of strings",)
    reasons = tuple(sorted(set(deny)))
    allow = value.get("allow")
    if allow is not True:
        if not reasons:
            word = "undefined" if allow is None else f"{json.dumps(allow)}, not true"
            reasons = (f"policy 'allow' is {word}",)
        return False, reasons
    if reasons:
        return False, reasons
    return True, ()


def decide(
    engine: Engine, bundle: PolicyBundle, input_doc: Any, input_bytes: bytes | None = None
) -> Decision:
    """Ask the policy. A policy problem is a deny with a reason, never an exception.
    `input_bytes`, when the caller has them, are `canonical(input_doc)`.

    Raises:
        EngineTimeout: the engine did not answer within its timeout; no decision.
    """
    if input_bytes is None:
        input_bytes = canonical(input_doc)
    reasons: tuple[str, ...]
    try:
        version = engine.version()
    except PolicyError as e:
        version = "unknown"
        allow, reasons = False, (f"policy engine error: {e}",)
    else:
        try:
            allow, reasons = _verdict(engine.evaluate(bundle, input_bytes))
        except PolicyError as e:
            allow, reasons = False, (f"policy engine error: {e}",)
    return Decision(
        allow=allow,
        deny=reasons,
        engine=engine.name,
        engine_version=version,
        policy=bundle.ref(),
        input=hash_bytes(input_bytes),
    )


def engine_from_config(config: Mapping[str, Any], override: str | None = None) -> Engine:
    """Build the configured engine (`--engine` overrides the config's `engine.kind`).

    Contacts nothing: the `opa-rest` server is first asked when `decide` runs.

    Raises:
        WorkspaceError: (exit 2) an unknown engine, a key no longer read, an http URL
            that is not loopback (without `engine.insecure`), a missing binary or URL.
    """
    if "token_env" in config:
        raise WorkspaceError(
            "engine.token_env is no longer read: delete it from the config and put the"
            " bearer token in PROMOTE_OPA_TOKEN"
        )
    kind = override or config.get("kind", "regorus")
    timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
    if kind == "regorus":
        return RegorusEngine(timeout)
    if kind == "opa":
        return OpaCliEngine(config.get("binary"), timeout)
    if kind == "opa-rest":
        url = config.get("url") or os.environ.get("PROMOTE_OPA_URL")
        if not url:
            raise WorkspaceError("engine 'opa-rest' needs engine.url in the config")
        insecure = config.get("insecure", False)
        if not isinstance(insecure, bool):
            raise WorkspaceError("engine.insecure: want true or false")
        token = os.environ.get("PROMOTE_OPA_TOKEN") or None
        return OpaRestEngine(check_opa_url(str(url), insecure), token, timeout)
    raise WorkspaceError(f"unknown policy engine {kind!r} (want regorus, opa or opa-rest)")
