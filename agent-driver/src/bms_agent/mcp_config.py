"""Ready-to-paste MCP client configuration for Claude Desktop, Cursor and VS Code.

Absolute paths everywhere (to ``uv`` and to each server folder): a relative command is the most
common reason a host cannot start a server, because hosts start servers from their own folder
with their own ``PATH``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
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


def server_entries(root: Path = ROOT, uv: str | None = None, python: str | None = None,
                   workspace: str | None = None) -> dict[str, dict[str, Any]]:
    """One stdio entry per server, named ``bms-<namespace>``: ``uv --directory <folder> run server.py``.

    With ``python`` the interpreter is started directly on ``<folder>/server.py`` instead (no uv).
    """
    entries = {}
    for name, folder in SERVER_FOLDERS.items():
        path = (root / folder).resolve()
        if python:
            entry: dict[str, Any] = {"command": python, "args": [str(path / "server.py")]}
        else:
            entry = {"command": uv, "args": ["--directory", str(path), "run", "server.py"]}
        if workspace:
            entry["env"] = {"BMS_WORKSPACE": workspace}
        entries[f"bms-{name}"] = entry
    return entries


def client_config(client: str, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if client == "vscode":
        return {"servers": {name: {"type": "stdio", **entry} for name, entry in entries.items()}}
    return {"mcpServers": entries}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bms-mcp-config",
                                description="Print MCP client configuration (JSON) for the five BMS-Flux servers.")
    p.add_argument("--client", choices=(*CLIENTS, "all"), default="all", help="which host (default: all)")
    p.add_argument("--workspace", help="set BMS_WORKSPACE for the servers (absolute path)")
    p.add_argument("--python", action="store_true",
                   help="start servers with this environment's Python instead of uv (no uv needed on the host)")
    args = p.parse_args(argv)
    python = sys.executable if args.python else None
    uv = None
    if not python:
        found = shutil.which("uv")
        if found is None:
            sys.stderr.write("bms-mcp-config: uv is not on PATH; install it (pip install uv) or use --python\n")
            return 2
        uv = str(Path(found).resolve())
    workspace = str(Path(args.workspace).expanduser().resolve()) if args.workspace else None
    entries = server_entries(uv=uv, python=python, workspace=workspace)
    clients = CLIENTS if args.client == "all" else (args.client,)
    for client in clients:
        if len(clients) > 1:
            sys.stdout.write(f"// {WHERE[client]}\n")
        sys.stdout.write(json.dumps(client_config(client, entries), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
