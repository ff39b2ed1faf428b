"""Ready-to-paste MCP client configuration for Claude Desktop, Cursor and VS Code.

``bms-mcp-config`` prints ONE valid JSON document on stdout (where to paste it goes to stderr).
Commands are absolute and need no shell and no ``PATH``: hosts start servers from their own
folder with their own environment, so a relative command or a version-manager shim (pyenv,
asdf) is the most common reason a host cannot start a server.

- default: this environment's console scripts (``<venv>/bin/bms-anomaly-mcp``);
- ``--uv``: the real ``uv`` binary (never a shim) running ``server.py`` in each folder;
- ``--python``: this environment's interpreter on each ``server.py``;
- ``--remote URL``: servers already running with ``--transport streamable-http`` (one port per
  server from ``--base-port``), with the bearer token in an ``Authorization`` header.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from .servers import ROOT, SERVER_FOLDERS

CLIENTS = ("claude", "cursor", "vscode")
WHERE = {
    "claude": "Claude Desktop: claude_desktop_config.json (macOS ~/Library/Application Support/Claude/, "
    "Windows %APPDATA%\\Claude\\, Linux ~/.config/Claude/)",
    "cursor": "Cursor: ~/.cursor/mcp.json (all projects) or <project>/.cursor/mcp.json",
    "vscode": "VS Code: <project>/.vscode/mcp.json (or the 'MCP: Open User Configuration' command)",
}
#: Console script of each server (``[project.scripts]`` of its pyproject).
SCRIPTS = {name: f"bms-{name}-mcp" for name in SERVER_FOLDERS}
DEFAULT_BASE_PORT = 8765
TOKEN_ENV = "BMS_MCP_TOKEN"


def is_shim(path: str | Path) -> bool:
    """A version-manager shim (pyenv, asdf, rbenv-style): a small script that re-dispatches."""
    p = Path(path)
    if "shims" in p.parts:
        return True
    try:
        head = p.read_bytes()[:2048]
    except OSError:
        return False
    return head.startswith(b"#!") and any(word in head for word in (b"pyenv", b"asdf", b"mise", b"rtx"))


def resolve_uv() -> str | None:
    """The absolute path of the real uv binary, or None.

    ``$UV`` first (uv sets it for the commands it runs), then every ``uv`` on ``PATH``; a shim is
    resolved through its manager (``pyenv which uv``, ``asdf which uv``) or skipped.
    """
    candidates: list[str] = []
    if os.environ.get("UV"):
        candidates.append(os.environ["UV"])
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        exe = Path(folder or ".") / ("uv.exe" if os.name == "nt" else "uv")
        if exe.is_file() and os.access(exe, os.X_OK):
            candidates.append(str(exe))
    for candidate in candidates:
        path = Path(candidate).resolve()
        if path.is_file() and not is_shim(path):
            return str(path)
        for manager in ("pyenv", "asdf"):
            if shutil.which(manager) is None:
                continue
            try:
                found = subprocess.run([manager, "which", "uv"], capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.SubprocessError):
                continue
            real = Path(found.stdout.strip()).resolve() if found.returncode == 0 and found.stdout.strip() else None
            if real is not None and real.is_file() and not is_shim(real):
                return str(real)
    return None


def scripts_dir() -> Path:
    """The bin/Scripts folder of the environment running this (a venv: not resolved through symlinks)."""
    return Path(sysconfig.get_path("scripts"))


def server_entries(
    root: Path = ROOT,
    uv: str | None = None,
    python: str | None = None,
    workspace: str | None = None,
    scripts: Path | None = None,
) -> dict[str, dict[str, Any]]:
    """One stdio entry per server, named ``bms-<namespace>``.

    ``uv``: ``<uv> --directory <folder> run server.py``; ``python``: ``<python> <folder>/server.py``;
    otherwise the console script ``<scripts>/bms-<namespace>-mcp``.
    """
    entries = {}
    for name, folder in SERVER_FOLDERS.items():
        path = (root / folder).resolve()
        if python:
            entry: dict[str, Any] = {"command": python, "args": [str(path / "server.py")]}
        elif uv:
            entry = {"command": uv, "args": ["--directory", str(path), "run", "server.py"]}
        else:
            exe = (scripts or scripts_dir()) / (SCRIPTS[name] + (".exe" if os.name == "nt" else ""))
            entry = {"command": str(exe), "args": []}
        if workspace:
            entry["env"] = {"BMS_WORKSPACE": workspace}
        entries[f"bms-{name}"] = entry
    return entries


def remote_urls(base_url: str, base_port: int) -> dict[str, str]:
    """``http://host:<base_port + i>/mcp`` for the i-th server (the order of ``SERVER_FOLDERS``)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return {
        name: urlunsplit((parts.scheme or "http", f"{host}:{base_port + i}", "/mcp", "", ""))
        for i, name in enumerate(SERVER_FOLDERS)
    }


def remote_config(client: str, urls: dict[str, str], token: str | None) -> dict[str, Any]:
    """Host configuration for servers running with ``--transport streamable-http``."""
    if client == "vscode":
        header = f"Bearer {token}" if token else "Bearer ${input:bms-mcp-token}"
        config: dict[str, Any] = {
            "servers": {
                f"bms-{n}": {"type": "http", "url": u, "headers": {"Authorization": header}} for n, u in urls.items()
            }
        }
        if not token:
            config["inputs"] = [
                {
                    "type": "promptString",
                    "id": "bms-mcp-token",
                    "password": True,
                    "description": "BMS-Flux MCP bearer token (the servers' --token / BMS_MCP_TOKEN)",
                }
            ]
        return config
    if client == "cursor":
        header = f"Bearer {token}" if token else "Bearer ${env:" + TOKEN_ENV + "}"
        return {"mcpServers": {f"bms-{n}": {"url": u, "headers": {"Authorization": header}} for n, u in urls.items()}}
    # Claude Desktop's config file starts local processes only: bridge with mcp-remote (stdio <-> HTTP).
    npx = shutil.which("npx") or "npx"
    return {
        "mcpServers": {
            f"bms-{n}": {
                "command": str(Path(npx).resolve()) if shutil.which("npx") else npx,
                "args": ["-y", "mcp-remote", u, "--header", "Authorization:${BMS_AUTH_HEADER}"],
                "env": {"BMS_AUTH_HEADER": f"Bearer {token or '<token>'}"},
            }
            for n, u in urls.items()
        }
    }


def client_config(client: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if client == "vscode":
        return {"servers": {name: {"type": "stdio", **entry} for name, entry in entries.items()}}
    return {"mcpServers": entries}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bms-mcp-config",
        description="Print MCP client configuration for the five BMS-Flux servers: one JSON document on stdout "
        "(where to paste it is written to stderr).",
    )
    p.add_argument(
        "--client",
        choices=(*CLIENTS, "all"),
        default="claude",
        help="which host's format (default: claude); 'all' prints one object keyed by host",
    )
    p.add_argument("--workspace", help="set BMS_WORKSPACE for the servers (made absolute)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--uv", action="store_true", help="start servers with the real uv binary (uv run server.py)")
    how.add_argument("--python", action="store_true", help="start servers with this environment's Python")
    how.add_argument(
        "--remote",
        metavar="URL",
        help="servers already running over streamable HTTP at this host, e.g. http://10.0.0.5",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        help=f"with --remote: port of the first server, the others follow (default {DEFAULT_BASE_PORT})",
    )
    p.add_argument("--token", help=f"with --remote: the bearer token (default: ${TOKEN_ENV}; else a placeholder)")
    args = p.parse_args(argv)
    clients = CLIENTS if args.client == "all" else (args.client,)

    if args.remote:
        urls = remote_urls(args.remote, args.base_port)
        token = args.token or os.environ.get(TOKEN_ENV)
        configs = {c: remote_config(c, urls, token) for c in clients}
        for url, script in zip(urls.values(), SCRIPTS.values()):
            port = url.rsplit(":", 1)[1].split("/")[0]
            sys.stderr.write(
                f"start on the server host: {script} --transport streamable-http --host 0.0.0.0 "
                f'--port {port} --token "${TOKEN_ENV}"\n'
            )
    else:
        python = sys.executable if args.python else None
        uv = None
        if args.uv:
            uv = resolve_uv()
            if uv is None:
                sys.stderr.write(
                    "bms-mcp-config: no real uv binary found (only shims or nothing on PATH); install uv "
                    "(pip install uv) or drop --uv to use this environment's console scripts\n"
                )
                return 2
        elif not python:
            missing = [
                s
                for s in SCRIPTS.values()
                if not (scripts_dir() / s).exists() and not (scripts_dir() / f"{s}.exe").exists()
            ]
            if missing:
                sys.stderr.write(
                    f"bms-mcp-config: console scripts {', '.join(missing)} are not installed in "
                    f"{scripts_dir()}: run 'uv sync' first, or use --python\n"
                )
                return 2
        workspace = str(Path(args.workspace).expanduser().resolve()) if args.workspace else None
        entries = server_entries(uv=uv, python=python, workspace=workspace)
        configs = {c: client_config(c, entries) for c in clients}
    for client in clients:
        sys.stderr.write(f"paste into {WHERE[client]}\n")
    document = configs[clients[0]] if len(clients) == 1 else configs
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
