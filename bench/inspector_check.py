"""Check every server with the official MCP Inspector CLI and print the findings as JSON.

    npm install @modelcontextprotocol/inspector      # once, anywhere (or let npx fetch it)
    uv run python bench/inspector_check.py [--inspector PATH/TO/mcp-inspector]

For each server (stdio): every tool lists an ``outputSchema``, ``--strict`` finds no schema
portability errors, ``health_check``'s result validates against its schema, ``resources/list``
and ``prompts/list`` are not empty. Then ``visualize_anomalies_3d`` on a small table returns an
image block, and ``bms-failure-mcp --transport streamable-http`` answers the Inspector over HTTP
with the token and refuses it without. Exit code 1 if any check fails. Not a pytest test (CI has
no npm); ``tests/mcp`` makes the same checks with the Python MCP client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jsonschema

BIN = Path(sys.executable).parent
SERVERS = ["bms-datagen-mcp", "bms-preprocess-mcp", "bms-anomaly-mcp", "bms-failure-mcp", "bms-forecast-mcp"]


def inspector(
    exe: list[str], target: list[str], *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, Any, str]:
    cmd = [*exe, "--cli", *target, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    try:
        payload = json.loads(done.stdout) if done.stdout.strip() else None
    except json.JSONDecodeError:
        payload = None
    return done.returncode, payload, done.stderr[-2000:]


def check_stdio(exe: list[str], server: str, ws: Path) -> dict[str, Any]:
    target = [str(BIN / server), "--workspace", str(ws)]
    out: dict[str, Any] = {"server": server}
    rc, tools, err = inspector(exe, target, "--method", "tools/list")
    listed = (tools or {}).get("tools", [])
    out["tools"] = len(listed)
    out["tools_with_output_schema"] = sum(1 for t in listed if t.get("outputSchema"))
    rc_strict, _, strict_err = inspector(exe, target, "--method", "tools/list", "--strict")
    out["strict_exit_code"] = rc_strict
    out["strict_report"] = strict_err.strip().splitlines()[-3:] if strict_err.strip() else []
    schemas = {t["name"]: t.get("outputSchema") for t in listed}
    rc, result, err = inspector(exe, target, "--method", "tools/call", "--tool-name", "health_check")
    try:
        jsonschema.validate(result["structuredContent"], schemas["health_check"])
        out["health_check_validates"] = True
    except Exception as exc:  # report, do not stop
        out["health_check_validates"] = f"no: {exc}"[:300]
    _, resources, _ = inspector(exe, target, "--method", "resources/list")
    _, prompts, _ = inspector(exe, target, "--method", "prompts/list")
    _, templates, _ = inspector(exe, target, "--method", "resources/templates/list")
    out["resources"] = [r["uri"] for r in (resources or {}).get("resources", [])]
    out["resource_templates"] = [r["uriTemplate"] for r in (templates or {}).get("resourceTemplates", [])]
    out["prompts"] = [p["name"] for p in (prompts or {}).get("prompts", [])]
    out["ok"] = (
        bool(listed)
        and out["tools_with_output_schema"] == len(listed)
        and rc_strict == 0
        and out["health_check_validates"] is True
        and bool(out["resources"])
        and bool(out["prompts"])
    )
    return out


def check_plot(exe: list[str], ws: Path) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    n = 300
    rng = np.random.default_rng(0)
    kinds = np.where(np.arange(n) < 15, "statistical", "normal")
    path = ws / "data" / "scored.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "CellID": [f"A-{i % 6 + 1}" for i in range(n)],
            "CellVoltage": rng.normal(2.23, 0.02, n),
            "InstantaneousCurrent": rng.normal(0, 5, n),
            "CellTemperature": rng.normal(25, 1, n),
            "AnomalyScore": rng.random(n),
            "AnomalyFlag": (kinds != "normal").astype(int),
            "AnomalyKind": kinds,
        }
    ).to_csv(path, index=False)
    target = [str(BIN / "bms-anomaly-mcp"), "--workspace", str(ws)]
    _, tools, _ = inspector(exe, target, "--method", "tools/list")
    schema = next(t["outputSchema"] for t in tools["tools"] if t["name"] == "visualize_anomalies_3d")
    rc, result, err = inspector(
        exe,
        target,
        "--method",
        "tools/call",
        "--tool-name",
        "visualize_anomalies_3d",
        "--tool-arg",
        f"result_csv={path}",
    )
    types = [c.get("type") for c in (result or {}).get("content", [])]
    valid = True
    try:
        jsonschema.validate(result["structuredContent"], schema)
    except Exception as exc:
        valid = f"no: {exc}"[:300]
    return {
        "content_types": types,
        "image_block": "image" in types,
        "resource_link": "resource_link" in types,
        "validates": valid,
        "ok": "image" in types and valid is True,
    }


def check_http(exe: list[str], ws: Path) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "inspector-check-token"
    proc = subprocess.Popen(
        [
            str(BIN / "bms-failure-mcp"),
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            "--token",
            token,
            "--workspace",
            str(ws),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        rc_ok, tools, _ = inspector(
            exe, [url], "--transport", "http", "--header", f"Authorization: Bearer {token}", "--method", "tools/list"
        )
        rc_no, refused, err_no = inspector(exe, [url], "--transport", "http", "--method", "tools/list")
        rc_bad, _, _ = inspector(
            exe, [url], "--transport", "http", "--header", "Authorization: Bearer wrong", "--method", "tools/list"
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    listed = (tools or {}).get("tools", [])
    return {
        "with_token_exit_code": rc_ok,
        "tools_over_http": len(listed),
        "all_have_output_schema": bool(listed) and all(t.get("outputSchema") for t in listed),
        "without_token_exit_code": rc_no,
        "without_token_refused": rc_no != 0 and not refused,
        "wrong_token_exit_code": rc_bad,
        "without_token_message": err_no.strip().splitlines()[-1:] if err_no else [],
        "ok": rc_ok == 0 and bool(listed) and rc_no != 0 and rc_bad != 0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--inspector", help="path of the mcp-inspector executable (default: on PATH, else npx)")
    args = p.parse_args()
    found = args.inspector or shutil.which("mcp-inspector")
    exe = [found] if found else ["npx", "-y", "@modelcontextprotocol/inspector"]
    version = subprocess.run([*exe, "--cli", "--version"], capture_output=True, text=True, timeout=120).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Path(tmp) / "ws"
        os.environ["BMS_WORKSPACE"] = str(ws)
        report = {
            "inspector": version,
            "servers": [check_stdio(exe, s, ws) for s in SERVERS],
            "plot": check_plot(exe, ws),
            "http": check_http(exe, ws),
        }
    report["ok"] = all(s["ok"] for s in report["servers"]) and report["plot"]["ok"] and report["http"]["ok"]
    print(json.dumps(report, indent=1))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
