"""The OpenAPI 3.1 description of `promote serve`'s JSON API.

Served at /api/openapi.json, and checked in as docs/web-openapi.json (`make docs`
writes it: `python -m promote.web.openapi docs/web-openapi.json`; a test fails when
it is stale). Written by hand, next to the routes, so that it says what they return.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["openapi", "render"]

_DIGEST = {"type": "string", "pattern": "^blake3:[0-9a-f]{64}$"}
_REF = {
    "type": "object",
    "required": ["digest", "size"],
    "properties": {"digest": _DIGEST, "size": {"type": "integer", "minimum": 0}},
}
_NREF = {"oneOf": [{"$ref": "#/components/schemas/Ref"}, {"type": "null"}]}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": required or sorted(props), "properties": props}


def _schemas() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Ref"}
    signer = _obj(
        {
            "role": {
                "type": "string",
                "description": "runner (the entry), checker (a timeline row), the roles"
                " the signer holds (an attestation), or signer (not verified)",
            },
            "keyid": {"type": ["string", "null"]},
            "signer": {
                "type": ["string", "null"],
                "description": "the trust roots' name for the key, once verified",
            },
            "verified": {
                "type": ["boolean", "null"],
                "description": "checked against the trust roots pinned for the entry"
                " (null: a v1 entry, recorded only)",
            },
        }
    )
    change = _obj({"path": {"type": "string"}, "from": _NREF, "to": _NREF})
    head = _obj(
        {
            "seq": {"type": "integer", "minimum": 0},
            "entry": {"oneOf": [_DIGEST, {"type": "null"}]},
            "state": ref,
        }
    )
    row = _obj(
        {
            "seq": {"type": "integer", "minimum": 1},
            "entry": _DIGEST,
            "schema": {"type": ["string", "null"]},
            "capsule": _DIGEST,
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
            "meta": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "string"},
                "description": "the capsule's meta; null when the capsule is not in the store",
            },
            "builder": {"type": ["string", "null"]},
            "source_revision": {"type": ["string", "null"]},
            "signers": {"type": "array", "items": {"$ref": "#/components/schemas/Signer"}},
        }
    )
    evidence = {
        "type": "object",
        "required": ["kind", "ref", "problem"],
        "properties": {
            "kind": {"enum": ["attestation", "check-report", "missing", "unknown"]},
            "ref": ref,
            "problem": {"type": ["string", "null"]},
            "payload_type": {"type": "string"},
            "predicate_type": {"type": ["string", "null"]},
            "status": {"type": ["string", "null"]},
            "checks": {"type": "array", "items": {"type": "object"}},
            "subjects": {"type": "array", "items": {"type": "object"}},
            "signers": {"type": "array", "items": {"$ref": "#/components/schemas/Signer"}},
        },
    }
    entry = _obj(
        {
            "seq": {"type": "integer", "minimum": 1},
            "entry": _DIGEST,
            "head": {"$ref": "#/components/schemas/Head"},
            "schema": {"type": ["string", "null"]},
            "prev": {"oneOf": [_DIGEST, {"type": "null"}]},
            "state_before": _NREF,
            "state_after": _NREF,
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}},
            "capsule": _obj(
                {
                    "ref": _NREF,
                    "meta": {"type": ["object", "null"]},
                    "base": {"type": ["string", "null"]},
                    "kind": {"type": ["string", "null"]},
                    "schema": {"type": ["string", "null"]},
                }
            ),
            "decision": _obj(
                {
                    "ref": _NREF,
                    "allow": {"type": ["boolean", "null"]},
                    "reasons": {"type": "array", "items": {"type": "string"}},
                    "engine": {"type": ["object", "null"]},
                    "input": _NREF,
                }
            ),
            "policy": _NREF,
            "trust": _NREF,
            "evidence": {"type": "array", "items": {"$ref": "#/components/schemas/Evidence"}},
            "signers": {"type": "array", "items": {"$ref": "#/components/schemas/Signer"}},
            "verified": {
                "type": "object",
                "description": "the signatures checked against the trust roots pinned for"
                " the entry: trust, runner, attestations (signers, roles met, predicate"
                " type), vsa (verified, predicate summary), problem",
            },
            "vsa": _NREF,
            "receipt": {
                "type": ["string", "null"],
                "description": "where to download the entry's receipt (null: a v1 entry)",
            },
            "missing": {"type": "array", "items": {"type": "string"}},
        }
    )
    rows = {"type": "array", "items": {"$ref": "#/components/schemas/Row"}}
    nseq = {"type": ["integer", "null"]}
    timeline = _obj(
        {
            "head": {"$ref": "#/components/schemas/Head"},
            "from": nseq,
            "per": {"type": "integer"},
            "entries": rows,
            "newer": nseq,
            "older": nseq,
        }
    )
    path_row = {"allOf": [{"$ref": "#/components/schemas/Row"}, _obj({"change": _NREF})]}
    path = _obj(
        {
            "path": {"type": "string"},
            "head": {"$ref": "#/components/schemas/Head"},
            "current": _NREF,
            "count": {"type": "integer"},
            "entries": {"type": "array", "items": path_row},
            "older": nseq,
        }
    )
    problem = _obj(
        {
            "kind": {"type": "string"},
            "location": {"type": "string"},
            "digest": {"type": ["string", "null"]},
            "detail": {"type": "string"},
        }
    )
    verify = _obj(
        {
            "head": {"$ref": "#/components/schemas/Head"},
            "checked_at": {"type": "string", "format": "date-time"},
            "cached": {"type": "boolean"},
            "clean": {"type": "boolean"},
            "checks": {"type": "array", "items": {"type": "string"}},
            "problems": {"type": "array", "items": problem},
            "signatures": _obj(
                {
                    "entries": {"type": "integer", "minimum": 0},
                    "checked": {"type": "string"},
                    "clean": {"type": "boolean"},
                    "problems": {"type": "array", "items": {"type": "object"}},
                }
            ),
        }
    )
    search = _obj(
        {
            "query": {"type": "string"},
            "kind": {"enum": ["digest", "path"]},
            "head": {"$ref": "#/components/schemas/Head"},
            "entries": {
                "type": "array",
                "items": _obj(
                    {
                        "seq": {"type": "integer"},
                        "entry": _DIGEST,
                        "roles": {"type": "array", "items": {"type": "string"}},
                    }
                ),
            },
            "paths": {"type": "array", "items": {"type": "string"}},
            "in_store": {"type": ["boolean", "null"]},
        },
        ["query", "kind", "head", "entries", "paths", "in_store"],
    )
    error = _obj(
        {
            "error": _obj(
                {"status": {"type": "integer"}, "message": {"type": "string"}},
            )
        }
    )
    return {
        "Ref": _REF,
        "Signer": signer,
        "Change": change,
        "Head": head,
        "Row": row,
        "Evidence": evidence,
        "Entry": entry,
        "Timeline": timeline,
        "PathHistory": path,
        "Verification": verify,
        "Search": search,
        "Error": error,
    }


def _op(summary: str, schema: str, params: list[dict[str, Any]], codes: list[int]) -> Any:
    responses: dict[str, Any] = {
        "200": {
            "description": summary,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    }
    for code in codes:
        responses[str(code)] = {
            "description": {400: "a malformed parameter", 404: "no such thing"}[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return {"get": {"summary": summary, "parameters": params, "responses": responses}}


def _param(name: str, where: str, schema: dict[str, Any], text: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": text,
    }


def openapi() -> dict[str, Any]:
    """The OpenAPI document of the JSON API."""
    seq = {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}
    paging = [
        _param("from", "query", seq, "the newest entry of the page (default: the head)"),
        _param("per", "query", {"type": "integer", "minimum": 1, "maximum": 200}, "default 50"),
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "promote serve",
            "version": "1",
            "description": "A read-only view of a promote workspace: the ledger, the "
            "entries' decisions and evidence, and the verification status. Only GET and "
            "HEAD; every response is JSON, except /objects/{digest} (octet-stream).",
        },
        "paths": {
            "/api/timeline": _op("the promotions, newest first", "Timeline", paging, [400, 404]),
            "/api/entries/{seq}": _op(
                "one ledger entry",
                "Entry",
                [_param("seq", "path", seq, "the entry number")],
                [400, 404],
            ),
            "/api/entries/{seq}/receipt": {
                "get": {
                    "summary": "the entry's receipt, as 'promote receipt SEQ' writes it",
                    "parameters": [_param("seq", "path", seq, "the entry number")],
                    "responses": {
                        "200": {
                            "description": "the receipt JSON, as an attachment"
                            " ('promote verify-receipt' checks it offline)",
                            "content": {"application/json": {}},
                        },
                        "400": {"description": "a malformed entry number"},
                        "404": {"description": "no such entry, a v1 entry, or no runner key"},
                    },
                }
            },
            "/api/paths/{path}": _op(
                "the entries that changed a path, newest first",
                "PathHistory",
                [_param("path", "path", {"type": "string"}, "a clean relative path"), *paging],
                [400, 404],
            ),
            "/api/verify": _op(
                "the ledger, pointer, object and view checks, cached per head",
                "Verification",
                [_param("recheck", "query", {"enum": ["1"]}, "run the checks again")],
                [400],
            ),
            "/api/search": _op(
                "a digest (which entries name it) or a path (the paths under it)",
                "Search",
                [_param("q", "query", {"type": "string", "maxLength": 4096}, "digest or path")],
                [400],
            ),
            "/objects/{digest}": {
                "get": {
                    "summary": "an object's bytes, verified (only with --serve-objects)",
                    "parameters": [_param("digest", "path", _DIGEST, "blake3:<64 hex>")],
                    "responses": {
                        "200": {
                            "description": "the bytes, as an attachment",
                            "content": {"application/octet-stream": {}},
                        },
                        "400": {"description": "a malformed digest"},
                        "404": {"description": "not in the store, or objects not served"},
                    },
                }
            },
        },
        "components": {"schemas": _schemas()},
    }


def render() -> str:
    """The checked-in form: sorted keys, two-space indent, a final newline."""
    return json.dumps(openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "docs/web-openapi.json"
    Path(out).write_text(render(), encoding="utf-8")
