"""The agent against an OpenAI-compatible stand-in (validated with the openai library's types), and the
context budget (only the relevant tools are sent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
from bms_agent.agent.backends import make_openai_chat
from bms_agent.agent.loop import Agent
from bms_agent.agent.tools import build_catalogue, estimate_tokens, relevant_servers, select_tools
from bms_agent.connections import ServerPool
from bms_schema.mcp_server import _input_schema
from fake_ollama import answer, tool_call
from fake_openai import FakeOpenAI
from mcp_types import Tool as McpTool

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent-driver" / "agent.py"
MODEL = "qwen2.5-7b-instruct"


def run_cli(
    question: str, base_url: str, workspace: Path, *extra: str, timeout: float = 90
) -> subprocess.CompletedProcess:
    env = {**os.environ, "BMS_WORKSPACE": str(workspace)}
    for name in ("OLLAMA_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, str(AGENT), question, "--base-url", base_url, "--model", MODEL, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )


def _openai_tool_result(body: dict[str, Any]) -> dict[str, Any]:
    tool_messages = [m for m in body["messages"] if m["role"] == "tool"]
    return json.loads(tool_messages[-1]["content"])


def test_cli_over_an_openai_compatible_api_streams_and_calls_tools(workspace: Path) -> None:
    def reply(body: dict[str, Any]) -> str:
        result = _openai_tool_result(body)
        return f"Simulated {result['data']['rows']} readings."

    script = [
        tool_call("datagen__simulate_bms_fleet", {"devices": 1, "cells_per_device": 2, "days": 1, "seed": 3}),
        answer(reply),
    ]
    with FakeOpenAI(script, api_key="sk-local") as fake:
        done = run_cli("Simulate one small string", fake.base_url, workspace, "--api-key", "sk-local")
    assert fake.errors == [], fake.errors
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(fake.requests) == 2 and all(r["stream"] is True for r in fake.requests)
    offered = [t["function"]["name"] for t in fake.requests[0]["tools"]]
    assert "datagen__simulate_bms_fleet" in offered and all(n.startswith("datagen__simulate_") for n in offered)
    second = fake.requests[1]["messages"]
    call = next(m for m in second if m["role"] == "assistant" and m.get("tool_calls"))["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"devices": 1, "cells_per_device": 2, "days": 1, "seed": 3}
    result_message = next(m for m in second if m["role"] == "tool")
    assert result_message["tool_call_id"] == call["id"]  # the fragments were joined and the id kept
    rows = json.loads(result_message["content"])["data"]["rows"]
    assert done.stdout.strip() == f"Simulated {rows} readings."  # streamed once, not printed twice
    assert "-> calling datagen__simulate_bms_fleet(devices=1" in done.stderr
    assert "OpenAI-compatible API at " in done.stderr


def test_loop_non_streaming_over_openai_with_tool_errors(workspace: Path, stub_spec) -> None:
    import openai

    script = [
        tool_call("stub__write_value", {"value": "x"}),
        tool_call("stub__write_value", {"value": 4}),
        answer(lambda body: f"doubled is {_openai_tool_result(body)['data']['doubled']}"),
    ]

    async def scenario(base_url: str) -> Any:
        async with ServerPool({"stub": stub_spec()}, log_dir=workspace / "logs") as pool:
            tools, routes = build_catalogue({"stub": await pool.list_tools("stub")})
            client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0)
            chat = make_openai_chat(client, MODEL, timeout=10, stream=False)
            agent = Agent(
                chat,
                pool,
                tools,
                routes,
                run_id="20261125T070000000Z-abcdef",
                workspace=str(workspace),
                max_steps=4,
                tool_timeout=20,
            )
            return await agent.ask("double 4")

    with FakeOpenAI(script) as fake:
        result = anyio.run(scenario, fake.base_url)
    assert fake.errors == [] and all(r["stream"] is False for r in fake.requests)
    assert result.text == "doubled is 8" and [e.status for e in result.tool_events] == ["error", "ok"]
    assert (
        json.loads([m for m in fake.requests[1]["messages"] if m["role"] == "tool"][0]["content"])["status"] == "error"
    )


def test_a_server_that_is_not_an_openai_api_is_reported(workspace: Path) -> None:
    class NotOpenAI(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = run_cli("anything", f"http://127.0.0.1:{server.server_address[1]}/v1", workspace, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "it answered HTTP 404, not as an OpenAI-compatible API" in done.stderr


def test_a_model_the_api_does_not_serve_is_reported(workspace: Path) -> None:
    with FakeOpenAI([], models=("llama-3.1-8b",)) as fake:
        done = run_cli("anything", fake.base_url, workspace, timeout=30)
    assert done.returncode == 3 and f"does not serve the model '{MODEL}' (it serves: llama-3.1-8b)" in done.stderr


def _real_catalogue() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    import importlib

    modules = {
        "datagen": "bms_datagen.server",
        "preprocess": "bms_preprocess.server",
        "anomaly": "bms_anomaly.server",
        "failure": "bms_failure.server",
        "forecast": "bms_forecast.server",
    }
    by_server = {}
    for name, module in modules.items():
        server = importlib.import_module(module).server
        by_server[name] = [
            McpTool(name=t.name, description=t.description, input_schema=_input_schema(t.args_model))
            for t in server.tools.values()
        ]
    return build_catalogue(by_server)


def test_context_budget_sends_only_relevant_tools() -> None:
    tools, routes = _real_catalogue()
    everything = estimate_tokens(tools)
    assert relevant_servers("Which cells will fail soon?", list(dict.fromkeys(r.server for r in routes.values()))) == [
        "datagen",
        "failure",
    ]
    chosen = select_tools(tools, routes, "Which cells will fail soon?", max_tokens=2048)
    names = {t["function"]["name"] for t in chosen}
    assert "failure__predict_cell_failure" in names and "datagen__simulate_bms_fleet" in names
    assert not any(n.endswith("__health_check") or "sdv" in n or n.startswith("forecast__") for n in names)
    assert estimate_tokens(chosen) <= 2048 < everything
    # with a data file the simulator is not needed
    with_file = {t["function"]["name"] for t in select_tools(tools, routes, "anomalies in data/my.csv?", 4096)}
    assert not any(n.startswith("datagen__") for n in with_file) and "anomaly__detect_anomalies" in with_file
    # a tight budget keeps the most relevant tool, never nothing
    tight = select_tools(tools, routes, "forecast cell 3-7", max_tokens=50)
    assert [t["function"]["name"] for t in tight] == ["forecast__predict_cell_timeseries"]
    # an unrelated question falls back to every server (still compact, no health checks)
    vague = select_tools(tools, routes, "hello", max_tokens=None)
    assert {routes[t["function"]["name"]].server for t in vague} == {
        "datagen",
        "preprocess",
        "anomaly",
        "failure",
        "forecast",
    }
    assert all(len(t["function"]["description"]) <= 430 for t in vague)
