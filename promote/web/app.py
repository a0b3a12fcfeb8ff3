"""`promote serve`'s application: server-rendered pages and a JSON API, read-only.

    GET /                     the timeline, newest first, paged (?from=SEQ&per=N)
    GET /entries/{seq}        one entry: changes, decision and reasons, evidence, signers
    GET /paths/{path}         the entries that changed one path
    GET /verify               the ledger, pointer and view checks (cached per head)
    GET /search?q=            a digest or a path
    GET /objects/{digest}     an object's bytes (only with --serve-objects)
    GET /api/...              the same as JSON; /api/openapi.json describes it

Every page works without JavaScript (there is none). Only GET and HEAD are answered
(anything else: 405); every response carries a strict CSP and `nosniff`; every
parameter is validated (400 malformed, 404 unknown) and an unexpected error is a bare
500, logged, never a traceback. See docs/web.md.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from importlib import resources
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from promote.web.data import (
    MAX_PER,
    PER,
    BadRequest,
    NotFound,
    Reader,
    parse_digest,
    parse_int,
    parse_path,
    parse_seq,
)

__all__ = ["CSP", "SECURITY_HEADERS", "create_app"]

log = logging.getLogger("promote.web")

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
ALLOWED_METHODS = ("GET", "HEAD")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """The outer layer: GET and HEAD only, the Host header (when bound to loopback,
    against DNS rebinding), the security headers and `Server-Timing` on every
    response, whatever produced it."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in SECURITY_HEADERS}
                ]
                headers += SECURITY_HEADERS
                ms = (time.perf_counter() - started) * 1000
                headers.append((b"server-timing", f"app;dur={ms:.1f}".encode()))
                message["headers"] = headers
            await send(message)

        if scope["method"] not in ALLOWED_METHODS:
            await _plain(405, "read-only: only GET and HEAD", [(b"allow", b"GET, HEAD")])(
                scope, receive, send_with_headers
            )
            return
        if self.hosts is not None:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            if _hostname(host) not in self.hosts:
                await _plain(400, "unexpected Host header")(scope, receive, send_with_headers)
                return
        await self.app(scope, receive, send_with_headers)


def _hostname(host: str) -> str:
    """`host` of a Host header `host[:port]` or `[v6]:port`, lower-cased."""
    h = host.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _plain(status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = (text + "\n").encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    *(headers or []),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


# -- templates ---------------------------------------------------------------------


def short(digest: object, n: int = 12) -> str:
    """`blake3:` and the first `n` hex digits: what a table shows of a digest."""
    if not isinstance(digest, str):
        return ""
    alg, _, hexd = digest.partition(":")
    return f"{alg}:{hexd[:n]}" if hexd else digest[:n]


def urlpath(path: object) -> str:
    return urllib.parse.quote(str(path), safe="/")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("promote.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = short
    env.filters["urlpath"] = urlpath
    env.filters["urlquery"] = lambda s: urllib.parse.quote(str(s), safe="")
    return env


# -- the application ---------------------------------------------------------------


def create_app(
    reader: Reader,
    hosts: Iterable[str] | None = None,
) -> ASGIApp:
    """The ASGI application over `reader`'s workspace.

    `hosts`: the Host names accepted (None: any), so that a page of another site that
    rebinds its name to 127.0.0.1 cannot read the API.
    """
    from promote.web.openapi import openapi

    templates = _environment()
    css = (resources.files("promote.web") / "static" / "style.css").read_bytes()

    def page(request: Request, name: str, data: dict[str, Any], status: int = 200) -> Response:
        html = templates.get_template(name).render(
            data=data, request=request, serve_objects=reader.serve_objects
        )
        return HTMLResponse(html, status_code=status)

    def api(data: Any, status: int = 200) -> Response:
        return JSONResponse(data, status_code=status)

    def q(request: Request, name: str) -> str | None:
        values = request.query_params.getlist(name)
        if len(values) > 1:
            raise BadRequest(f"{name}: given {len(values)} times")
        return values[0] if values else None

    def paging(request: Request) -> tuple[int | None, int]:
        start = q(request, "from")
        return (
            parse_seq(start) if start is not None else None,
            parse_int(q(request, "per"), "per", PER, 1, MAX_PER),
        )

    # pages and their JSON twins

    def timeline_data(request: Request) -> dict[str, Any]:
        start, per = paging(request)
        return reader.timeline(start, per)

    def timeline(request: Request) -> Response:
        return page(request, "timeline.html", timeline_data(request))

    def timeline_api(request: Request) -> Response:
        return api(timeline_data(request))

    def entry_data(request: Request) -> dict[str, Any]:
        return reader.entry(parse_seq(request.path_params["seq"]))

    def entry(request: Request) -> Response:
        return page(request, "entry.html", entry_data(request))

    def entry_api(request: Request) -> Response:
        return api(entry_data(request))

    def receipt(request: Request) -> Response:
        seq = parse_seq(request.path_params["seq"])
        body = reader.receipt(seq)
        headers = {
            "content-disposition": f'attachment; filename="receipt-{seq}.json"',
            "cache-control": "no-store",
        }
        return Response(body, media_type="application/json", headers=headers)

    def path_data(request: Request) -> dict[str, Any]:
        start, per = paging(request)
        return reader.path(parse_path(request.path_params["path"]), start, per)

    def path(request: Request) -> Response:
        return page(request, "path.html", path_data(request))

    def path_api(request: Request) -> Response:
        return api(path_data(request))

    def verify_data(request: Request) -> dict[str, Any]:
        recheck = q(request, "recheck")
        if recheck not in (None, "1"):
            raise BadRequest("recheck: want 1")
        return reader.verification(recheck=recheck == "1")

    def verify(request: Request) -> Response:
        return page(request, "verify.html", verify_data(request))

    def verify_api(request: Request) -> Response:
        return api(verify_data(request))

    def search_data(request: Request) -> dict[str, Any]:
        return reader.search(q(request, "q") or "")

    def search(request: Request) -> Response:
        if not (q(request, "q") or "").strip():
            return page(request, "search.html", {"query": "", "kind": None})
        data = search_data(request)
        if data["kind"] == "path" and data["path"] and len(data["paths"]) == 1:
            return RedirectResponse(f"/paths/{urlpath(data['path'])}", status_code=303)
        if data["kind"] == "digest" and len(data["entries"]) == 1:
            hit = data["entries"][0]
            if hit["roles"] == ["entry"]:
                return RedirectResponse(f"/entries/{hit['seq']}", status_code=303)
        return page(request, "search.html", data)

    def search_api(request: Request) -> Response:
        return api(search_data(request))

    def objects(request: Request) -> Response:
        digest = parse_digest(request.path_params["digest"])
        size = reader.object_size(digest)
        headers = {
            "content-length": str(size),
            "content-disposition": f'attachment; filename="{digest.algorithm}-{digest.hex}"',
            "cache-control": "no-store",
        }
        if request.method == "HEAD":
            return Response(b"", media_type="application/octet-stream", headers=headers)
        chunks = reader.object_chunks(digest)
        return StreamingResponse(
            iter(chunks), media_type="application/octet-stream", headers=headers
        )

    def style(request: Request) -> Response:
        return Response(css, media_type="text/css; charset=utf-8")

    def openapi_json(request: Request) -> Response:
        return api(openapi())

    def robots(request: Request) -> Response:
        return PlainTextResponse("User-agent: *\nDisallow: /\n")

    # errors: 400 and 404 with one line, anything else a bare 500

    def wants_json(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    def error(request: Request, status: int, message: str) -> Response:
        if wants_json(request):
            return api({"error": {"status": status, "message": message}}, status)
        data = {"status": status, "message": message}
        return page(request, "error.html", data, status)

    async def bad_request(request: Request, exc: Exception) -> Response:
        return error(request, 400, str(exc))

    async def not_found(request: Request, exc: Exception) -> Response:
        return error(request, 404, str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        message = {404: "no such page", 405: "method not allowed"}.get(exc.status_code, "error")
        response = error(request, exc.status_code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def internal(request: Request, exc: Exception) -> Response:
        log.error("internal error serving %s", request.url.path, exc_info=exc)
        return PlainTextResponse("internal error\n", status_code=500)

    routes = [
        Route("/", timeline, methods=["GET"]),
        Route("/entries/{seq}", entry, methods=["GET"]),
        Route("/entries/{seq}/receipt", receipt, methods=["GET"]),
        Route("/paths/{path:path}", path, methods=["GET"]),
        Route("/verify", verify, methods=["GET"]),
        Route("/search", search, methods=["GET"]),
        Route("/objects/{digest}", objects, methods=["GET"]),
        Route("/static/style.css", style, methods=["GET"]),
        Route("/robots.txt", robots, methods=["GET"]),
        Route("/api/openapi.json", openapi_json, methods=["GET"]),
        Route("/api/timeline", timeline_api, methods=["GET"]),
        Route("/api/entries/{seq}", entry_api, methods=["GET"]),
        Route("/api/entries/{seq}/receipt", receipt, methods=["GET"]),
        Route("/api/paths/{path:path}", path_api, methods=["GET"]),
        Route("/api/verify", verify_api, methods=["GET"]),
        Route("/api/search", search_api, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            BadRequest: bad_request,
            NotFound: not_found,
            HTTPException: http_error,
            Exception: internal,
        },
    )
    # A path is either a route or a 404: no redirect that adds or drops a slash.
    app.router.redirect_slashes = False
    return Guard(app, frozenset(h.lower() for h in hosts) if hosts is not None else None)
