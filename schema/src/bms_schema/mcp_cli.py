"""Command line of every BMS-Flux MCP server: flags, stdio or streamable HTTP with a bearer token.

``bms-anomaly-mcp --help`` prints the options and exits (it never starts serving);
``--transport streamable-http`` serves ``http://HOST:PORT/mcp`` and refuses every request
without ``Authorization: Bearer <token>`` (HTTP 401). The token comes from ``--token`` or
``BMS_MCP_TOKEN``; without either, a random one is generated and written to stderr (stdout
stays free for the protocol on stdio, and the HTTP server writes nothing there either).
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mcp_server import ToolServer

log = logging.getLogger("bms.server")

TOKEN_ENV = "BMS_MCP_TOKEN"
DEFAULT_PORT = 8765
MCP_PATH = "/mcp"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def parser(server: "ToolServer", prog: str | None = None) -> argparse.ArgumentParser:
    tools = ", ".join(sorted(server.tools))
    p = argparse.ArgumentParser(
        prog=prog or _prog(server),
        description=f"{server.name}: MCP server. {server.instructions}".strip(),
        epilog=f"tools: {tools}. Logs go to stderr; over stdio, stdout carries only the MCP protocol.",
    )
    p.add_argument("--version", action="version", version=f"{server.name} {server.package_version()}")
    p.add_argument(
        "--workspace",
        type=Path,
        default=None,
        help="workspace folder holding data/, runs/ and models/ (default: $BMS_WORKSPACE or ~/.bms-flux/workspace)",
    )
    p.add_argument(
        "--transport",
        choices=("stdio", "streamable-http"),
        default="stdio",
        help="stdio (default: a host starts this process) or streamable-http (a remote server)",
    )
    p.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"HTTP port (default {DEFAULT_PORT})")
    p.add_argument(
        "--token",
        default=None,
        help=f"bearer token HTTP clients must send (default: ${TOKEN_ENV}; generated and shown on stderr "
        "when neither is set)",
    )
    p.add_argument("--log-level", default=None, help="DEBUG, INFO (default, or $BMS_LOG_LEVEL), WARNING, ERROR")
    return p


def _prog(server: "ToolServer") -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name and name not in ("server.py", "__main__.py", "-c") else server.name


def main(server: "ToolServer", argv: list[str] | None = None) -> None:
    args = parser(server).parse_args(argv)
    if args.workspace is not None:
        os.environ["BMS_WORKSPACE"] = str(args.workspace.expanduser().resolve())
    if args.transport == "stdio":
        server.run_stdio(log_level=args.log_level)
        return
    token = args.token or os.environ.get(TOKEN_ENV) or ""
    if not token:
        token = secrets.token_urlsafe(24)
        print(
            f"{server.name}: no --token or ${TOKEN_ENV} given; clients must send 'Authorization: Bearer {token}'",
            file=sys.stderr,
            flush=True,
        )
    server.run_http(host=args.host, port=args.port, token=token, log_level=args.log_level)


class BearerAuth:
    """ASGI wrapper: HTTP requests without ``Authorization: Bearer <token>`` get 401."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str):
        if not token:
            raise ValueError("a bearer token is required for the HTTP transport")
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = json.dumps(
                    {
                        "error": "unauthorized",
                        "error_description": "send 'Authorization: Bearer <token>' (the server's --token "
                        f"or ${TOKEN_ENV})",
                    }
                ).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", b'Bearer realm="bms-flux"'),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def http_app(server: "ToolServer", token: str, host: str = "127.0.0.1") -> Any:
    """The ASGI app serving ``server`` at ``/mcp`` behind the bearer check."""
    app = server.build().streamable_http_app(streamable_http_path=MCP_PATH, host=host)
    return BearerAuth(app, token)
