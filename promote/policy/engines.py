"""The policy gate: Rego engines behind one small protocol, failing closed.

Engines:
- `regorus`: embedded, in-process (the default). One engine per evaluation, since a
  regorus Engine is not thread-safe. Input is passed as JSON text.
- `opa`: the `opa eval` command line, when a binary is configured or on PATH.
- `opa-rest`: OPA's REST Data API, `POST <url>/v1/data/<package path>`.

Every engine answers the same question, `data.<package>`, and returns `allow` and
`deny`. `decide` turns anything short of `allow == true` with an empty `deny` into a
deny: an engine error, a timeout, a missing or unparsable policy, an undefined result,
a result of the wrong type. The reasons say which.
"""

from __future__ import annotations

import abc
import concurrent.futures
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from cas.digest import ObjectRef, hash_bytes
from promote.canonical import canonical
from promote.errors import PolicyError, WorkspaceError

__all__ = [
    "DECISION_SCHEMA",
    "Decision",
    "Engine",
    "PolicyBundle",
    "decide",
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


class Engine(abc.ABC):
    """A Rego engine: evaluate `data.<package>` for an input given as JSON text."""

    name: str

    @abc.abstractmethod
    def version(self) -> str:
        """The engine's version, recorded in every decision."""

    @abc.abstractmethod
    def evaluate(self, bundle: PolicyBundle, input_json: str) -> Any:
        """The value of `data.<package>`, or None when undefined.

        Raises:
            PolicyError: on any engine failure.
        """


class RegorusEngine(Engine):
    """The embedded engine (gordon-to-regorus)."""

    name = "regorus"

    def version(self) -> str:
        from importlib.metadata import version

        return version("gordon-to-regorus")

    def evaluate(self, bundle: PolicyBundle, input_json: str) -> Any:
        os.environ.setdefault("RUST_BACKTRACE", "0")
        import regorus

        engine = regorus.Engine()
        try:
            for name, text in sorted(bundle.files.items()):
                engine.add_policy(name, text)
            engine.set_input_json(input_json)
            raw = engine.eval_query_as_json(f"data.{bundle.package}")
        except Exception as e:
            raise PolicyError(f"regorus: {_first_line(e)}") from None
        return _query_value(json.loads(raw))


class OpaCliEngine(Engine):
    """`opa eval`, for users who run a real OPA binary."""

    name = "opa"

    def __init__(self, binary: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
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
        except (OSError, subprocess.SubprocessError) as e:
            raise PolicyError(f"opa version: {e}") from None
        for line in out.splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
        return "unknown"

    def evaluate(self, bundle: PolicyBundle, input_json: str) -> Any:
        with tempfile.TemporaryDirectory(prefix="promote-opa-") as d:
            args = [self.binary, "eval", "--format", "json", "--stdin-input"]
            for name, text in sorted(bundle.files.items()):
                path = Path(d, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                args += ["--data", str(path)]
            args.append(f"data.{bundle.package}")
            try:
                r = subprocess.run(
                    args, input=input_json.encode(), capture_output=True, timeout=self.timeout
                )
            except subprocess.TimeoutExpired:
                raise PolicyError(f"opa eval timed out after {self.timeout:g}s") from None
            except OSError as e:
                raise PolicyError(f"opa eval: {e}") from None
        if r.returncode != 0:
            raise PolicyError(
                f"opa eval failed: {_first_line(r.stderr.decode() or r.stdout.decode())}"
            )
        try:
            return _query_value(json.loads(r.stdout))
        except ValueError as e:
            raise PolicyError(f"opa eval: unreadable output: {e}") from None


class OpaRestEngine(Engine):
    """OPA's REST Data API. No `result` in the answer means undefined, hence deny."""

    name = "opa-rest"

    def __init__(
        self, url: str, token: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise PolicyError(f"OPA at {self.url}: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise PolicyError(f"OPA at {self.url} is unreachable: {e}") from None

    def version(self) -> str:
        return "rest"

    def evaluate(self, bundle: PolicyBundle, input_json: str) -> Any:
        body = b'{"input":' + input_json.encode() + b"}"
        answer = self._request("POST", "/v1/data/" + bundle.package.replace(".", "/"), body)
        if not isinstance(answer, dict) or "result" not in answer:
            return None
        return answer["result"]


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
    """Read allow/deny from a package's value, failing closed on anything odd."""
    if not isinstance(value, dict):
        return False, ("policy result is undefined",)
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
    engine: Engine,
    bundle: PolicyBundle,
    input_doc: Any,
    timeout: float = DEFAULT_TIMEOUT,
) -> Decision:
    """Ask the policy. Never raises for a policy problem: that is a deny with a reason."""
    input_bytes = canonical(input_doc)
    reasons: tuple[str, ...]
    try:
        version = engine.version()
    except PolicyError as e:
        version = "unknown"
        allow, reasons = False, (f"policy engine error: {e}",)
    else:
        pool = concurrent.futures.ThreadPoolExecutor(1)
        future = pool.submit(engine.evaluate, bundle, input_bytes.decode())
        try:
            allow, reasons = _verdict(future.result(timeout=timeout))
        except concurrent.futures.TimeoutError:
            allow, reasons = False, (f"policy engine timed out after {timeout:g}s",)
        except PolicyError as e:
            allow, reasons = False, (f"policy engine error: {e}",)
        except Exception as e:
            allow, reasons = False, (f"policy engine error: {_first_line(e)}",)
        finally:
            pool.shutdown(wait=False)
    return Decision(
        allow=allow,
        deny=reasons,
        engine=engine.name,
        engine_version=version,
        policy=bundle.ref(),
        input=hash_bytes(input_bytes),
    )


def engine_from_config(config: Mapping[str, Any], override: str | None = None) -> Engine:
    """Build the configured engine (`--engine` overrides the config's `engine.kind`)."""
    kind = override or config.get("kind", "regorus")
    timeout = float(config.get("timeout", DEFAULT_TIMEOUT))
    if kind == "regorus":
        return RegorusEngine()
    if kind == "opa":
        return OpaCliEngine(config.get("binary"), timeout)
    if kind == "opa-rest":
        url = config.get("url") or os.environ.get("PROMOTE_OPA_URL")
        if not url:
            raise WorkspaceError("engine 'opa-rest' needs engine.url in the config")
        token = os.environ.get(config.get("token_env", "PROMOTE_OPA_TOKEN"))
        return OpaRestEngine(url, token, timeout)
    raise WorkspaceError(f"unknown policy engine {kind!r} (want regorus, opa or opa-rest)")
