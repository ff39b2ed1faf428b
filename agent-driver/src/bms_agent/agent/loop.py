"""The agent loop: ask the model, run the tool calls it requests over MCP, send results back, repeat.

Bounded everywhere: at most ``max_steps`` model calls, a timeout per model call and per tool call.
Tool failures go back to the model as results (it may correct its arguments); an unknown tool
name too. The model's final message (no more tool calls) is the answer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..connections import ServerPool, ToolCallError
from .backends import ChatFn, make_ollama_chat
from .summarise import summarise_envelope
from .tools import ToolRoute

log = logging.getLogger("bms.agent")

DEFAULT_MODEL = "qwen2.5:7b"

SYSTEM_PROMPT = """You are BMS-Flux, an assistant for battery engineers monitoring stationary lead-acid battery strings.
You answer with the tools of five BMS-Flux servers (names are <server>__<tool>):
- datagen: simulate a battery fleet with ground truth (simulate_bms_fleet), SDV synthetic data;
- preprocess: clean readings, engineer features, impute, scale (preprocess_battery_data_tool does all);
- anomaly: hybrid anomaly detection (detect_anomalies);
- failure: which cells will die soon (predict_cell_failure);
- forecast: forecasts of one cell's readings (predict_cell_timeseries).
Tools take file paths inside the workspace {workspace} and return paths of the files they write:
pass those paths to the next tool. If the user has no data, simulate a small fleet first.
Never invent numbers: quote the figures the tools returned. Be brief and concrete."""


@dataclass
class ToolEvent:
    name: str
    arguments: dict[str, Any]
    status: str
    seconds: float
    message: str


@dataclass
class AgentAnswer:
    text: str
    steps: int
    tool_events: list[ToolEvent] = field(default_factory=list)
    stopped: str | None = None  # why the loop ended early (step limit), else None


#: The Ollama chat function (kept under its old name).
make_chat = make_ollama_chat


class Agent:
    def __init__(
        self,
        chat: ChatFn,
        pool: ServerPool,
        tools: list[dict[str, Any]],
        routes: dict[str, ToolRoute],
        run_id: str,
        workspace: str,
        max_steps: int = 8,
        tool_timeout: float = 300.0,
        on_tool: Callable[[ToolEvent], None] | None = None,
        on_call: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.chat, self.pool, self.tools, self.routes = chat, pool, tools, routes
        self.run_id, self.workspace = run_id, workspace
        self.max_steps, self.tool_timeout, self.on_tool = max_steps, tool_timeout, on_tool
        self.on_call = on_call  # told when the model asks for a tool, before it runs

    async def ask(self, question: str) -> AgentAnswer:
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": SYSTEM_PROMPT.format(workspace=self.workspace)},
            {"role": "user", "content": question},
        ]
        events: list[ToolEvent] = []
        for step in range(1, self.max_steps + 1):
            reply = await self.chat(messages, self.tools)
            messages.append(reply)
            calls = reply.get("tool_calls") or []
            if not calls:
                return AgentAnswer(text=reply.get("content") or "", steps=step, tool_events=events)
            for index, call in enumerate(calls):
                call.setdefault("id", f"call_{step}_{index}")
                name = call["function"]["name"]
                arguments = call["function"].get("arguments") or {}
                if isinstance(arguments, str):  # some models send a JSON string
                    try:
                        arguments = json.loads(arguments)
                    except json.JSONDecodeError:
                        arguments = {}
                call["function"]["arguments"] = dict(arguments)
                if self.on_call is not None:
                    self.on_call(name, dict(arguments))
                event, content = await self.run_tool(name, dict(arguments))
                events.append(event)
                if self.on_tool is not None:
                    self.on_tool(event)
                messages.append({"role": "tool", "tool_call_id": call["id"], "tool_name": name, "content": content})
        last = next(
            (m.get("content") for m in reversed(messages) if m.get("role") == "assistant" and m.get("content")), ""
        )
        return AgentAnswer(
            text=last or "",
            steps=self.max_steps,
            tool_events=events,
            stopped=f"stopped after {self.max_steps} model calls (--max-steps) before a final answer",
        )

    async def run_tool(self, name: str, arguments: dict[str, Any]) -> tuple[ToolEvent, str]:
        route = self.routes.get(name)
        start = time.perf_counter()
        if route is None:
            message = f"unknown tool '{name}'; available tools: {', '.join(sorted(self.routes))}"
            return ToolEvent(name, arguments, "error", 0.0, message), json.dumps(
                {"status": "error", "message": message}
            )
        arguments = {k: v for k, v in arguments.items() if k != "run_id"}
        try:
            result = await self.pool.call(
                route.server, route.tool, {**arguments, "run_id": self.run_id}, timeout=self.tool_timeout
            )
        except ToolCallError as exc:
            seconds = time.perf_counter() - start
            envelope = exc.envelope or {"status": "error", "message": exc.detail}
            return (
                ToolEvent(name, arguments, "error", seconds, exc.detail.splitlines()[0]),
                summarise_envelope(envelope),
            )
        return (
            ToolEvent(name, arguments, "ok", result.seconds, result.envelope.get("message", "")),
            summarise_envelope(result.envelope),
        )
