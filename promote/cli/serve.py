"""The command that serves a read-only web view of a workspace.

    promote serve [--root WS] [--bind 127.0.0.1:8080] [--allow-remote] [--serve-objects]

Needs the `web` extra (`pip install 'cas-promote[web]'`). See docs/web.md.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import click

from cas.errors import UsageError
from promote.cli.common import open_ledger, workspace

DEFAULT_BIND = "127.0.0.1:8080"


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` (port 0: any free port).

    Raises:
        UsageError: anything else.
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--bind {text!r}: want HOST:PORT, such as 127.0.0.1:8080")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: wherever it resolves, not assumed


@click.command(name="serve")
@click.option(
    "--root",
    type=click.Path(path_type=Path),
    help="The workspace to serve (as promote --root; default: found by walking up).",
)
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    help="HOST:PORT to listen on (port 0: any free port, printed).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a --bind address other than loopback (anyone who reaches it can read the ledger).",
)
@click.option(
    "--serve-objects",
    is_flag=True,
    help="Serve object bytes by digest at /objects/DIGEST (default: 404).",
)
@click.pass_context
def serve_cmd(
    ctx: click.Context, root: Path | None, bind: str, allow_remote: bool, serve_objects: bool
) -> None:
    """A read-only web view and JSON API of the workspace: the timeline, each entry's
    changes, decision, reasons and evidence, path history, verification and search.

    Listens on loopback only unless --allow-remote; answers GET and HEAD only. Prints
    the URL, then serves until interrupted.
    """
    host, port = parse_bind(bind)
    loopback = is_loopback(host)
    if not loopback and not allow_remote:
        raise UsageError(
            f"--bind {bind}: not a loopback address; add --allow-remote to serve the"
            " ledger to the network"
        )
    try:
        import uvicorn

        from promote.web.app import create_app
        from promote.web.data import Reader
    except ImportError as e:
        raise UsageError(
            f"promote serve needs the web extra ({e.name} is missing):"
            " pip install 'cas-promote[web]'"
        ) from None

    if root is not None:
        ctx.find_root().obj["root"] = root
    ws = workspace(ctx)
    reader = Reader(ws, open_ledger, serve_objects=serve_objects)
    reader.head()  # the ledger opens and reads before anything listens
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--bind {bind}: {e.strerror or e}") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    hosts = None
    if loopback:  # a page elsewhere that rebinds its name to 127.0.0.1 reads nothing
        hosts = ["localhost", "127.0.0.1", "::1", host]
    app = create_app(reader, hosts=hosts)
    config = uvicorn.Config(
        app,
        log_level="info" if ctx.find_root().obj.get("verbose") else "warning",
        access_log=bool(ctx.find_root().obj.get("verbose")),
        server_header=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"serving {ws.root} at http://{shown}:{port}/ (read-only; Ctrl-C stops)")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        reader.close()


#: Registered on `promote` by promote.cli.app.
COMMANDS: tuple[click.Command, ...] = (serve_cmd,)
#: Registered on `promote ledger`.
LEDGER_COMMANDS: tuple[click.Command, ...] = ()
