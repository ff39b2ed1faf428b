"""The Ollama agent against a stand-in Ollama that speaks the real wire format (validated by the client's types)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from bms_agent.agent.loop import Agent, make_chat
from bms_agent.agent.summarise import summarise_envelope
from bms_agent.agent.tools import build_catalogue, split
from bms_agent.connections import ServerPool
from bms_schema.mcp_server import ToolArgs, _input_schema
from fake_ollama import FakeOllama, answer, last_tool_result, tool_call
from mcp_types import Tool as McpTool
from ollama._types import Tool as OllamaTool
from pydantic import Field

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "agent-driver" / "agent.py"


def run_agent_cli(
    question: str, host: str, workspace: Path, *extra: str, timeout: float = 90
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OLLAMA_HOST": host, "BMS_WORKSPACE": str(workspace)}
    env.pop("OLLAMA_MODEL", None)
    return subprocess.run(
        [sys.executable, str(AGENT), question, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(ROOT),
    )


class DemoArgs(ToolArgs):
    data_path: str = Field(description="CSV or Parquet file")
    steps: int = Field(default=25, ge=1, le=200, description="readings ahead")
    cell_id: str | None = Field(default=None, description="cell to forecast")
    mode: str = Field(default="fast", json_schema_extra={"enum": ["fast", "exact"]})


def test_tool_catalogue_is_namespaced_and_valid_for_ollama() -> None:
    tool = McpTool(name="predict", description="Forecast a cell.", input_schema=_input_schema(DemoArgs))
    tools, routes = build_catalogue(
        {"forecast": [tool], "anomaly": [McpTool(name="predict", input_schema={"type": "object"})]}
    )
    assert sorted(routes) == ["anomaly__predict", "forecast__predict"]  # same tool name, no clash
    assert split("forecast__predict") == ("forecast", "predict")
    fn = OllamaTool.model_validate(tools[0]).function  # what the ollama client itself will send
    props = fn.parameters.properties
    assert "run_id" not in props  # the agent supplies the run id itself
    assert fn.parameters.required == ["data_path"]
    assert (
        props["steps"].type == "integer" and props["steps"].description == "readings ahead (default 25, >= 1, <= 200)"
    )
    assert props["cell_id"].type == "string" and "optional" in props["cell_id"].description
    assert list(props["mode"].enum) == ["fast", "exact"]
    assert fn.description.startswith("[forecast server] Forecast a cell.")


def test_summary_keeps_paths_and_cuts_bulk() -> None:
    envelope = {
        "status": "ok",
        "message": "done",
        "run_id": "r",
        "data": {"rows": 10, "cells": list(range(5000)), "blob": "x" * 100_000},
        "artifacts": [{"path": f"/ws/runs/r/01-t/file{i}.csv", "kind": "table", "description": "t"} for i in range(30)],
    }
    text = summarise_envelope(envelope)
    assert len(text) <= 4000
    summary = json.loads(text)
    assert summary["message"] == "done" and summary["data"]["rows"] == 10
    assert summary["data"]["cells"][-1] == "... 4990 more items"
    assert summary["artifacts"][0]["path"] == "/ws/runs/r/01-t/file0.csv" and summary["artifacts_more"] == 10


def test_agent_cli_calls_a_tool_sends_the_result_back_and_prints_the_answer(workspace: Path) -> None:
    def reply(body: dict[str, Any]) -> str:
        result = last_tool_result(body)
        return f"Simulated {result['data']['rows']} readings into {result['data']['path']}."

    script = [
        tool_call("datagen__simulate_bms_fleet", {"devices": 1, "cells_per_device": 2, "days": 1, "seed": 5}),
        answer(reply),
    ]
    with FakeOllama(script) as fake:
        done = run_agent_cli("Simulate one small string", fake.host, workspace)
    assert fake.errors == []
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert len(fake.requests) == 2 and all(r["stream"] for r in fake.requests)  # streaming by default
    offered = {t["function"]["name"] for t in fake.requests[0]["tools"]}
    # the context budget: only the simulator is relevant to "simulate ...", and Ollama is told num_ctx
    assert "datagen__simulate_bms_fleet" in offered
    assert all(n.startswith("datagen__simulate_") for n in offered)  # no health checks, SDV or other servers
    assert all(r["options"]["num_ctx"] == 8192 for r in fake.requests)
    sent_back = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert sent_back[0]["tool_name"] == "datagen__simulate_bms_fleet"
    result = json.loads(sent_back[0]["content"])
    assert result["status"] == "ok" and len(sent_back[0]["content"]) <= 4000  # a summary, not the file
    csv = Path(result["data"]["path"])
    rows = sum(1 for _ in csv.open()) - 1  # the file the tool really wrote
    assert done.stdout.strip() == f"Simulated {rows} readings into {csv}."  # streamed, printed once
    assert "-> calling datagen__simulate_bms_fleet(devices=1" in done.stderr  # shown as it happens
    assert csv.parent.parent.name == result["run_id"] and csv.is_relative_to(workspace / "runs")
    assert "-> datagen__simulate_bms_fleet(devices=1, cells_per_device=2, days=1, seed=5) ok" in done.stderr


def test_agent_loop_non_streaming_with_a_failing_and_an_unknown_tool(workspace: Path, stub_spec) -> None:
    script = [
        tool_call("stub__write_value", {"value": "not a number"}),
        tool_call("stub__no_such_tool", {}),
        tool_call("stub__write_value", {"value": 21}),
        answer(lambda body: f"doubled is {last_tool_result(body)['data']['doubled']}"),
    ]

    async def scenario(host: str) -> Any:
        import ollama

        async with ServerPool({"stub": stub_spec()}, log_dir=workspace / "logs") as pool:
            tools, routes = build_catalogue({"stub": await pool.list_tools("stub")})
            chat = make_chat(ollama.AsyncClient(host=host, timeout=10), "qwen2.5:7b", timeout=10, stream=False)
            agent = Agent(
                chat,
                pool,
                tools,
                routes,
                run_id="20261125T070000000Z-abcdef",
                workspace=str(workspace),
                max_steps=5,
                tool_timeout=20,
            )
            return await agent.ask("double 21")

    with FakeOllama(script) as fake:
        result = anyio.run(scenario, fake.host)
    assert fake.errors == [] and all(r["stream"] is False for r in fake.requests)
    assert result.text == "doubled is 42" and result.steps == 4 and result.stopped is None
    assert [e.status for e in result.tool_events] == ["error", "error", "ok"]
    assert "'value': Input should be a valid integer" in result.tool_events[0].message
    assert "unknown tool 'stub__no_such_tool'" in result.tool_events[1].message
    # the tool errors went back to the model as results, so it could correct itself
    second = [m for m in fake.requests[1]["messages"] if m["role"] == "tool"]
    assert json.loads(second[0]["content"])["status"] == "error"
    written = workspace / "runs" / "20261125T070000000Z-abcdef"
    assert (written / "01-write_value").is_dir() and json.loads((written / "manifest.json").read_text())["steps"][-1][
        "status"
    ] == "ok"


def test_agent_stops_after_max_steps(workspace: Path, stub_spec) -> None:
    script = [tool_call("stub__health_check", {}) for _ in range(2)]

    async def scenario(host: str) -> Any:
        import ollama

        async with ServerPool({"stub": stub_spec()}) as pool:
            tools, routes = build_catalogue({"stub": await pool.list_tools("stub")})
            chat = make_chat(ollama.AsyncClient(host=host), "qwen2.5:7b", timeout=10, stream=True)
            return await Agent(
                chat, pool, tools, routes, run_id="20261125T070000000Z-abcdef", workspace=str(workspace), max_steps=2
            ).ask("loop")

    with FakeOllama(script) as fake:
        result = anyio.run(scenario, fake.host)
    assert result.stopped == "stopped after 2 model calls (--max-steps) before a final answer"
    assert len(result.tool_events) == 2 and len(fake.requests) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ollama_unreachable_says_how_to_start_it(workspace: Path) -> None:
    done = run_agent_cli("anything", f"127.0.0.1:{_closed_port()}", workspace, timeout=30)
    assert done.returncode == 3
    assert "Ollama is not reachable at http://127.0.0.1:" in done.stderr
    assert "ollama serve" in done.stderr and "ollama pull qwen2.5:7b" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_model_not_pulled_says_which_to_pull(workspace: Path) -> None:
    with FakeOllama([], models=("llama3.1:8b",)) as fake:
        done = run_agent_cli("anything", fake.host, workspace, "--model", "qwen2.5:7b", timeout=30)
    assert done.returncode == 3
    assert "does not have the model 'qwen2.5:7b' (it has: llama3.1:8b)" in done.stderr
    assert "ollama pull qwen2.5:7b" in done.stderr and "Traceback" not in done.stderr


def test_every_real_server_tool_converts_without_losing_arguments() -> None:
    """All tools of the five servers (in-process, same schemas as tools/list) fit Ollama's Tool model."""
    import importlib

    modules = {
        "datagen": "bms_datagen.server",
        "preprocess": "bms_preprocess.server",
        "anomaly": "bms_anomaly.server",
        "failure": "bms_failure.server",
        "forecast": "bms_forecast.server",
    }
    tools_by_server = {}
    for name, module in modules.items():
        server = importlib.import_module(module).server
        tools_by_server[name] = [
            McpTool(name=t.name, description=t.description, input_schema=_input_schema(t.args_model))
            for t in server.tools.values()
        ]
    tools, routes = build_catalogue(tools_by_server)
    assert len(tools) == sum(len(v) for v in tools_by_server.values()) == len(routes)
    for definition, (name, route) in zip(tools, routes.items()):
        fn = OllamaTool.model_validate(definition).function
        original = next(t for t in tools_by_server[route.server] if t.name == route.tool).input_schema
        assert set(fn.parameters.properties) == set(original["properties"]) - {"run_id"}, name
        assert all(p.type for p in fn.parameters.properties.values()), name
    if "anomaly__detect_anomalies" in routes:
        props = OllamaTool.model_validate(
            tools[list(routes).index("anomaly__detect_anomalies")]
        ).function.parameters.properties
        assert list(props["contamination"].type) == ["number", "string"]
        assert "or 'auto'" in props["contamination"].description
    if "anomaly__train_anomaly_detector" in routes:
        props = OllamaTool.model_validate(
            tools[list(routes).index("anomaly__train_anomaly_detector")]
        ).function.parameters.properties
        assert props["features"].type == "array" and props["features"].items == {"type": "string"}


def test_a_model_call_that_takes_too_long_times_out(stub_spec) -> None:
    import time

    def slow(body: dict[str, Any]) -> dict[str, Any]:
        time.sleep(3)
        return {"content": "late"}

    async def scenario(host: str) -> None:
        import ollama

        chat = make_chat(ollama.AsyncClient(host=host), "qwen2.5:7b", timeout=1, stream=False)
        async with ServerPool({"stub": stub_spec()}) as pool:
            await Agent(chat, pool, [], {}, run_id="20261125T070000000Z-abcdef", workspace="/tmp", max_steps=2).ask(
                "hello"
            )

    with FakeOllama([slow]) as fake:
        start = time.perf_counter()
        try:
            anyio.run(scenario, fake.host)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the model call did not time out")
        assert time.perf_counter() - start < 3


def test_a_model_without_tool_support_is_reported_with_a_hint(workspace: Path) -> None:
    def refuse(body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("registry.ollama.ai/library/gemma:2b does not support tools")

    with FakeOllama([refuse], models=("gemma:2b",)) as fake:
        done = run_agent_cli("anything", fake.host, workspace, "--model", "gemma:2b", "--no-stream")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        "Ollama refused the request: registry.ollama.ai/library/gemma:2b does not support tools (HTTP 400)"
        in done.stderr
    )
    assert "choose a model with tool support, e.g. qwen2.5 or llama3.1" in done.stderr


def test_a_hung_tool_is_cut_off_and_the_model_told(workspace: Path, stub_spec) -> None:
    script = [tool_call("stub__hang", {}), answer(lambda body: last_tool_result(body)["message"])]

    async def scenario(host: str) -> Any:
        import ollama

        async with ServerPool({"stub": stub_spec()}) as pool:
            tools, routes = build_catalogue({"stub": await pool.list_tools("stub")})
            chat = make_chat(ollama.AsyncClient(host=host), "qwen2.5:7b", timeout=10, stream=False)
            return await Agent(
                chat,
                pool,
                tools,
                routes,
                run_id="20261125T070000000Z-abcdef",
                workspace=str(workspace),
                max_steps=3,
                tool_timeout=1,
            ).ask("hang")

    with FakeOllama(script) as fake:
        result = anyio.run(scenario, fake.host)
    assert [e.status for e in result.tool_events] == ["error"]
    assert result.text.startswith("no answer within 1 s: the server is hung")


def test_a_server_that_is_not_ollama_is_reported_without_a_traceback(workspace: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NotOllama(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotOllama)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = run_agent_cli("anything", f"http://127.0.0.1:{server.server_address[1]}", workspace, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert "answered HTTP 404, not as Ollama" in done.stderr and "ollama serve" in done.stderr
