"""``bms-mcp-config``: one valid JSON document per host, commands that start from anywhere."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from bms_agent.mcp_config import SCRIPTS, is_shim, remote_urls, resolve_uv
from bms_agent.servers import SERVER_FOLDERS

CONFIG = [sys.executable, "-m", "bms_agent.mcp_config"]


def _config(*args: str, env: dict[str, str] | None = None) -> Any:
    done = subprocess.run([*CONFIG, *args], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert "paste into" in done.stderr  # the where-to note is on stderr, stdout is only JSON
    return json.loads(done.stdout)


def _initialize(command: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
    from mcp import Client, StdioServerParameters

    async def main() -> str:
        params = StdioServerParameters(command=command, args=args, env=env, cwd=str(cwd))
        async with Client(params, mode="legacy") as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert "health_check" in names
            health = await client.call_tool("health_check", {})
            assert not health.is_error
            return health.structured_content["data"]["workspace"]["path"]

    return anyio.run(main)


@pytest.mark.parametrize("client", ["claude", "cursor", "vscode"])
def test_default_config_is_json_with_absolute_console_scripts(client: str) -> None:
    config = _config("--client", client, "--workspace", "~/bms-ws")
    servers = config["servers"] if client == "vscode" else config["mcpServers"]
    assert sorted(servers) == sorted(f"bms-{n}" for n in SERVER_FOLDERS)
    for name, entry in servers.items():
        command = Path(entry["command"])
        assert command.is_absolute() and command.name == SCRIPTS[name.removeprefix("bms-")]
        assert command.is_file() and not is_shim(command)
        assert entry["env"]["BMS_WORKSPACE"] == str(Path("~/bms-ws").expanduser().resolve())
        if client == "vscode":
            assert entry["type"] == "stdio"


def test_all_clients_is_one_json_object() -> None:
    config = _config("--client", "all", "--python")
    assert set(config) == {"claude", "cursor", "vscode"}
    assert config["vscode"]["servers"]["bms-anomaly"]["command"] == sys.executable


@pytest.mark.parametrize("mode", [[], ["--python"]])
def test_exact_command_starts_from_another_directory_with_a_bare_environment(mode: list[str], tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    entry = _config("--client", "cursor", "--workspace", str(ws), *mode)["mcpServers"]["bms-forecast"]
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    # what a host passes: no venv on PATH, no PYTHONPATH, only the entry's env
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **entry["env"]}
    assert _initialize(entry["command"], entry["args"], env, elsewhere) == str(ws)  # the configured workspace


def _write_exe(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_uv_shim_is_resolved_to_the_real_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _write_exe(tmp_path / "versions" / "3.11" / "bin" / "uv", "\x7fELF not really\n")
    shim = _write_exe(tmp_path / "pyenv" / "shims" / "uv", '#!/usr/bin/env bash\nexec pyenv exec "$@"\n')
    _write_exe(tmp_path / "pyenv" / "bin" / "pyenv", f"#!/bin/sh\n[ \"$1 $2\" = 'which uv' ] && echo {real}\n")
    assert is_shim(shim) and not is_shim(real)
    monkeypatch.delenv("UV", raising=False)
    monkeypatch.setenv("PATH", os.pathsep.join([str(shim.parent), str(tmp_path / "pyenv" / "bin"), "/usr/bin:/bin"]))
    assert resolve_uv() == str(real.resolve())
    monkeypatch.setenv("UV", str(shim))
    assert resolve_uv() == str(real.resolve())
    # only a shim and no manager that can resolve it: no uv (rather than a shim that breaks later)
    monkeypatch.delenv("UV")
    monkeypatch.setenv("PATH", str(shim.parent))
    assert resolve_uv() is None
    env = {**os.environ, "PATH": str(shim.parent)}
    env.pop("UV", None)
    done = subprocess.run([*CONFIG, "--uv"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2 and "no real uv binary found" in done.stderr and done.stdout == ""


def test_uv_mode_uses_the_real_uv(monkeypatch: pytest.MonkeyPatch) -> None:
    real = resolve_uv()
    if real is None:
        pytest.skip("no uv installed here")
    entry = _config("--uv", "--client", "claude")["mcpServers"]["bms-anomaly"]
    assert entry["command"] == real and not is_shim(real)
    assert entry["args"][0] == "--directory" and Path(entry["args"][1]).is_absolute()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_remote_variant_connects_with_the_configured_header(tmp_path: Path) -> None:
    base = _free_port()
    token = "remote-secret"
    for client in ("claude", "vscode"):
        config = _config("--remote", "http://127.0.0.1", "--base-port", str(base), "--client", client)
        servers = config["servers" if client == "vscode" else "mcpServers"]
        assert len(servers) == 5
    vscode = _config("--remote", "http://127.0.0.1", "--base-port", str(base), "--client", "vscode")
    assert vscode["inputs"][0]["password"] is True  # no token given: VS Code asks for it
    cursor = _config("--remote", "http://127.0.0.1", "--base-port", str(base), "--client", "cursor", "--token", token)[
        "mcpServers"
    ]
    assert remote_urls("http://127.0.0.1", base)["failure"] == cursor["bms-failure"]["url"]
    index = list(SERVER_FOLDERS).index("failure")
    entry = cursor["bms-failure"]
    assert entry["url"] == f"http://127.0.0.1:{base + index}/mcp"
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "bms-failure-mcp"),
            "--transport",
            "streamable-http",
            "--port",
            str(base + index),
            "--token",
            token,
            "--workspace",
            str(tmp_path / "ws"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        async def main() -> None:
            async with create_mcp_http_client(headers=entry["headers"]) as http:
                async with Client(streamable_http_client(entry["url"], http_client=http), mode="legacy") as client:
                    assert "predict_cell_failure" in {t.name for t in (await client.list_tools()).tools}

        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", base + index), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.3)
        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
