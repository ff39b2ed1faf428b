"""What an MCP host sees: output schemas, pictures, resources, prompts, flags, streamable HTTP + bearer.

The servers run as real subprocesses; results are checked against each tool's declared
``outputSchema`` with jsonschema (the check the MCP Inspector and the Python client make).
"""

from __future__ import annotations

import base64
import io
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import numpy as np
import pandas as pd
import pytest
from bms_schema.mcp_server import ToolArgs, ToolContext, ToolData, ToolOutput, ToolServer, output_schema

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mcp_stdio import SERVERS, connect, envelope  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SHORT_NAMES = {
    "datagen": "bms-datagen-mcp",
    "preprocess": "bms-preprocess-mcp",
    "anomaly": "bms-anomaly-mcp",
    "failure": "bms-failure-mcp",
    "forecast": "bms-forecast-mcp",
}


def _validate(tool: Any, result: Any) -> dict[str, Any]:
    payload = envelope(result)
    jsonschema.validate(payload, tool.output_schema)
    return payload


@pytest.mark.parametrize("key", sorted(SERVERS))
def test_every_tool_declares_output_schema_resources_prompts(key: str, workspace: Path) -> None:
    async def main() -> None:
        async with connect(SERVERS[key]) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert len(tools) >= 2
            for tool in tools.values():
                assert tool.output_schema and tool.output_schema["type"] == "object", tool.name
                jsonschema.Draft202012Validator.check_schema(tool.output_schema)
                assert set(tool.output_schema["required"]) == {"status", "message"}
                # each tool's data is typed: the tool's own fields, or {} in an error envelope
                typed, empty = tool.output_schema["properties"]["data"]["anyOf"]
                assert typed["properties"] and "seconds" in typed["properties"], tool.name
                assert empty == {"type": "object", "maxProperties": 0, "description": "empty when status is 'error'"}
                # dedented: no docstring indentation left, first line not blank
                assert tool.description and not tool.description[0].isspace(), tool.name
                assert not any(line.startswith("    ") for line in tool.description.splitlines()), tool.name
            health = await client.call_tool("health_check", {})
            payload = _validate(tools["health_check"], health)
            assert payload["data"]["server"] == SERVERS[key] and payload["data"]["status"] == "healthy"
            # an error envelope validates too (and is marked as an error)
            bad = await client.call_tool("health_check", {"no_such_argument": 1})
            assert bad.is_error
            assert "'no_such_argument': unknown argument" in _validate(tools["health_check"], bad)["message"]

            resources = (await client.list_resources()).resources
            assert "bms://data-dictionary" in [str(r.uri) for r in resources]
            text = (await client.read_resource("bms://data-dictionary")).contents[0].text
            assert "`CellVoltage` | V |" in text and "65.535" in text
            templates = (await client.list_resource_templates()).resource_templates
            assert {t.uri_template for t in templates} >= {"bms://models/{name}/card"}
            prompts = {p.name: p for p in (await client.list_prompts()).prompts}
            assert set(prompts) == {"review-fleet-health", "investigate-cell", "explain-alarm"}
            got = await client.get_prompt("investigate-cell", {"cell_id": "D-7"})
            assert "cell D-7" in got.messages[0].content.text

    anyio.run(main)


def test_plot_tool_returns_image_block_and_resource_link(workspace: Path) -> None:
    rng = np.random.default_rng(0)
    n = 400
    kinds = np.where(np.arange(n) < 20, "statistical", "normal")
    frame = pd.DataFrame(
        {
            "CellID": [f"A-{i % 8 + 1}" for i in range(n)],
            "Timestamp": pd.date_range("2025-01-01", periods=n, freq="15min", tz="UTC").astype(str),
            "CellVoltage": rng.normal(2.23, 0.02, n),
            "InstantaneousCurrent": rng.normal(0, 5, n),
            "CellTemperature": rng.normal(25, 1, n),
            "AnomalyScore": rng.random(n),
            "AnomalyFlag": (kinds != "normal").astype(int),
            "AnomalyKind": kinds,
        }
    )
    path = workspace / "data" / "scored.csv"
    frame.to_csv(path, index=False)

    async def main() -> None:
        async with connect(SERVERS["anomaly"]) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            result = await client.call_tool("visualize_anomalies_3d", {"result_csv": str(path)})
            payload = _validate(tools["visualize_anomalies_3d"], result)
            assert payload["status"] == "ok", payload["message"]
            images = [b for b in result.content if b.type == "image"]
            links = [b for b in result.content if b.type == "resource_link"]
            assert len(images) == 1 and images[0].mime_type == "image/png"
            from PIL import Image

            with Image.open(io.BytesIO(base64.b64decode(images[0].data))) as picture:
                assert max(picture.size) <= 800
            png_link = next(link for link in links if link.name == "anomalies_3d.png")
            assert png_link.uri.startswith("bms://runs/" + payload["run_id"] + "/")
            full = (await client.read_resource(png_link.uri)).contents[0]
            assert base64.b64decode(full.blob) == Path(payload["data"]["png_path"]).read_bytes()
            # offline: the HTML loads plotly.js from the copy beside it and names no other host
            html = Path(payload["data"]["html_path"])
            text = html.read_text()
            assert '<script charset="utf-8" src="plotly.min.js"></script>' in text
            assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), "HTML loads something from another host"
            assert "cdn.plot.ly" not in text and (html.parent / "plotly.min.js").stat().st_size > 1_000_000
            # honest sampling: a 100-point sample keeps the anomaly share (5 %), not anomalies first
            small = await client.call_tool("visualize_anomalies_3d", {"result_csv": str(path), "max_points": 100})
            by_kind = envelope(small)["data"]["by_kind"]
            assert by_kind.get("statistical", 0) <= 12, by_kind
            # the resource is confined to the runs folder
            with pytest.raises(Exception, match="not inside|no file"):
                await client.read_resource("bms://runs/../../etc/passwd")

    anyio.run(main)


class _Args(ToolArgs):
    n: int = 1


class _Data(ToolData):
    count: int


def test_typed_data_schema_and_mismatch_is_reported(workspace: Path) -> None:
    server = ToolServer("typed-test")

    @server.tool(_Args, title="Count", writes_run=False, data_model=_Data)
    def count(args: _Args, ctx: ToolContext) -> ToolOutput:
        """Count.

        Indented docstring body.
        """
        return ToolOutput(message="ok", data={"count": args.n} if args.n >= 0 else {"count": "many"})

    schema = server.tools["count"].output_schema()
    assert server.tools["count"].description == "Count.\n\nIndented docstring body."
    good = server.call("count", {"n": 3}).model_dump(mode="json")
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "data": {"count": "x"}}, schema)
    bad = server.call("count", {"n": -1})
    assert bad.status == "error" and "does not match its declared output schema" in bad.message
    jsonschema.validate(bad.model_dump(mode="json"), schema)
    assert output_schema()["properties"]["data"]["type"] == "object"


@pytest.mark.parametrize("key", ["datagen", "anomaly"])
def test_help_and_version_do_not_serve(key: str, tmp_path: Path) -> None:
    exe = BIN / SHORT_NAMES[key]
    assert exe.exists(), f"console script {exe.name} not installed"
    # stdin left open: a server that started serving instead of printing help would hang here
    proc = subprocess.run(
        [str(exe), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=20, stdin=subprocess.PIPE
    )
    assert proc.returncode == 0 and "--transport {stdio,streamable-http}" in proc.stdout
    assert "--workspace" in proc.stdout and "--token" in proc.stdout
    version = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=20)
    assert version.returncode == 0 and version.stdout.startswith(SERVERS[key] + " ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streamable_http_with_bearer_token(workspace: Path, tmp_path: Path) -> None:
    import httpx

    port, token = _free_port(), "test-token-123"
    env = {**os.environ, "BMS_MCP_TOKEN": token}
    proc = subprocess.Popen(
        [
            str(BIN / "bms-failure-mcp"),
            "--transport",
            "streamable-http",
            "--port",
            str(port),
            "--workspace",
            str(workspace),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                refused = httpx.post(url, json=init, headers=headers, timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.3)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        wrong = httpx.post(url, json=init, headers={**headers, "authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401

        async def main() -> None:
            from mcp import Client
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http:
                async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                    tools = {t.name: t for t in (await client.list_tools()).tools}
                    assert "predict_cell_failure" in tools and all(t.output_schema for t in tools.values())
                    result = await client.call_tool("health_check", {})
                    payload = _validate(tools["health_check"], result)
                    assert payload["data"]["workspace"]["path"] == str(workspace)
                    assert (await client.list_prompts()).prompts

        anyio.run(main)
        assert proc.stdout is not None and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.stdout.read() == b""  # nothing on stdout


def test_resources_list_the_latest_report_and_model_cards(workspace: Path) -> None:
    from bms_schema.registry import ModelRegistry
    from mcp import Client

    with ModelRegistry().register("anomaly_hybrid", {"metrics": {"f1": 0.71}, "features": ["CellVoltage"]}) as staging:
        (staging.dir / "card.md").write_text("Trained on the default fleet.\n")
    old, new = workspace / "runs" / "20261201T100000000Z-aaaaaa", workspace / "runs" / "20261201T110000000Z-bbbbbb"
    for run, text in ((old, "# old report"), (new, "# new report\n\n**Dead cells (1 of 4):** A-2.")):
        run.mkdir(parents=True)
        (run / "report.md").write_text(text)
    server = ToolServer("res-test")
    server.add_health_check(models=["anomaly_hybrid", "forecaster"])

    async def main() -> None:
        async with Client(server.build(), mode="legacy") as client:
            uris = [str(r.uri) for r in (await client.list_resources()).resources]
            assert uris == ["bms://data-dictionary", "bms://reports/latest", "bms://models/anomaly_hybrid/card"]
            report = (await client.read_resource("bms://reports/latest")).contents[0].text
            assert report.startswith("# new report") and "A-2" in report
            card = (await client.read_resource("bms://models/anomaly_hybrid/card")).contents[0].text
            assert card.startswith("# Model card: anomaly_hybrid v0001") and "Trained on the default fleet." in card
            assert '"f1": 0.71' in card
            with pytest.raises(Exception, match="no model 'forecaster' is registered yet"):
                await client.read_resource("bms://models/forecaster/card")
            with pytest.raises(Exception, match="unknown prompt 'nope'"):
                await client.get_prompt("nope", {})
            with pytest.raises(Exception, match="needs the argument"):
                await client.get_prompt("explain-alarm", {})

    anyio.run(main)
