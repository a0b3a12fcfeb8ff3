"""`promote serve`: a read-only web view and JSON API over a workspace (docs/web.md).

`data` reads the ledger and the store into plain dicts, one per page; `app` renders
them as HTML (Jinja2, no JavaScript) and JSON (Starlette); `openapi` describes the API.
Needs the `web` extra (Starlette, uvicorn, Jinja2).
"""
