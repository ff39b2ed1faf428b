"""Chat backends: Ollama's API and any OpenAI-compatible endpoint (vLLM, llama.cpp, LM Studio, ...).

Both turn the agent's own message list into their wire format and return the assistant's reply
in one shape::

    {"role": "assistant", "content": str,
     "tool_calls": [{"id": str, "function": {"name": str, "arguments": dict}}]}

Tool results are ``{"role": "tool", "tool_call_id": id, "tool_name": name, "content": str}``.
Streaming: text chunks go to ``on_text`` as they arrive; tool calls are collected from the
stream (OpenAI sends their JSON arguments in fragments) and returned whole.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

ChatFn = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[dict[str, Any]]]
TextFn = Callable[[str], None]


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return dict(raw)
    if isinstance(raw, str) and raw.strip():
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}
    return {}


# -- Ollama ------------------------------------------------------------------------------
def to_ollama_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m["role"] == "assistant":
            wire: dict[str, Any] = {"role": "assistant", "content": m.get("content") or ""}
            if m.get("tool_calls"):
                wire["tool_calls"] = [
                    {"function": {"name": c["function"]["name"], "arguments": c["function"].get("arguments") or {}}}
                    for c in m["tool_calls"]
                ]
            out.append(wire)
        elif m["role"] == "tool":
            out.append({"role": "tool", "tool_name": m.get("tool_name", ""), "content": m.get("content", "")})
        else:
            out.append({"role": m["role"], "content": m.get("content", "")})
    return out


def make_ollama_chat(
    client: Any, model: str, timeout: float, stream: bool, on_text: TextFn | None = None, num_ctx: int | None = None
) -> ChatFn:
    """A chat function over an ``ollama.AsyncClient``; ``num_ctx`` sets the model's context window."""
    options = {"num_ctx": int(num_ctx)} if num_ctx else None

    async def chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        wire = to_ollama_messages(messages)
        with anyio.fail_after(timeout):
            if not stream:
                response = await client.chat(model=model, messages=wire, tools=tools, stream=False, options=options)
                return _ollama_reply(response.message.content or "", response.message.tool_calls or [])
            content: list[str] = []
            calls: list[Any] = []
            async for part in await client.chat(model=model, messages=wire, tools=tools, stream=True, options=options):
                if part.message.content:
                    content.append(part.message.content)
                    if on_text is not None:
                        on_text(part.message.content)
                calls.extend(part.message.tool_calls or [])
            return _ollama_reply("".join(content), calls)

    return chat


def _ollama_reply(content: str, calls: list[Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "function": {"name": c.function.name, "arguments": _arguments(c.function.arguments)}}
            for i, c in enumerate(calls)
        ]
    return message


# -- OpenAI-compatible ------------------------------------------------------------------------
def to_openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in messages:
        if m["role"] == "assistant":
            wire: dict[str, Any] = {"role": "assistant", "content": m.get("content") or ""}
            if m.get("tool_calls"):
                wire["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": json.dumps(c["function"].get("arguments") or {}),
                        },
                    }
                    for c in m["tool_calls"]
                ]
            out.append(wire)
        elif m["role"] == "tool":
            out.append({"role": "tool", "tool_call_id": m["tool_call_id"], "content": m.get("content", "")})
        else:
            out.append({"role": m["role"], "content": m.get("content", "")})
    return out


def make_openai_chat(
    client: Any, model: str, timeout: float, stream: bool, on_text: TextFn | None = None, max_tokens: int | None = None
) -> ChatFn:
    """A chat function over an ``openai.AsyncOpenAI`` client (any ``/v1/chat/completions`` server)."""
    extra: dict[str, Any] = {"max_tokens": max_tokens} if max_tokens else {}

    async def chat(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
        wire = to_openai_messages(messages)
        kwargs: dict[str, Any] = {"model": model, "messages": wire, **extra}
        if tools:
            kwargs["tools"] = tools
        with anyio.fail_after(timeout):
            if not stream:
                response = await client.chat.completions.create(stream=False, **kwargs)
                message = response.choices[0].message
                calls = [(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or []]
                return _openai_reply(message.content or "", calls)
            content: list[str] = []
            partial: dict[int, dict[str, Any]] = {}
            async for chunk in await client.chat.completions.create(stream=True, **kwargs):
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    content.append(delta.content)
                    if on_text is not None:
                        on_text(delta.content)
                for call in delta.tool_calls or []:
                    slot = partial.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                    if call.id:
                        slot["id"] = call.id
                    if call.function is not None:
                        slot["name"] += call.function.name or ""
                        slot["arguments"] += call.function.arguments or ""
            calls = [(s["id"], s["name"], s["arguments"]) for _, s in sorted(partial.items())]
            return _openai_reply("".join(content), calls)

    return chat


def _openai_reply(content: str, calls: list[tuple[str | None, str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = [
            {"id": call_id or f"call_{i}", "function": {"name": name, "arguments": _arguments(args)}}
            for i, (call_id, name, args) in enumerate(calls)
        ]
    return message
