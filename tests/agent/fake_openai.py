"""A local stand-in for an OpenAI-compatible API (``/v1/models``, ``/v1/chat/completions``).

Every request is validated with the ``openai`` library's own types (the request parameters, each
message as ``ChatCompletionMessageParam``, each tool as ``ChatCompletionFunctionToolParam``) and
every response with ``ChatCompletion`` / ``ChatCompletionChunk`` / ``Model`` before it is sent.
Streaming follows the wire format: server-sent events ``data: {chunk}`` ending with
``data: [DONE]``; tool-call arguments arrive in several fragments, as real servers send them.
Replies come from a script of functions ``(request_body) -> {"content": ..., "tool_calls": [...]}``
(the same shapes as ``fake_ollama``'s ``tool_call`` and ``answer``).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from openai.types import Model
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageParam,
)
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

MESSAGE = TypeAdapter(ChatCompletionMessageParam)
TOOL = TypeAdapter(ChatCompletionFunctionToolParam)
STREAMING = TypeAdapter(CompletionCreateParamsStreaming)
NON_STREAMING = TypeAdapter(CompletionCreateParamsNonStreaming)
CREATED = 1_764_000_000


class FakeOpenAI:
    def __init__(
        self, script: list[Any], models: tuple[str, ...] = ("qwen2.5-7b-instruct",), api_key: str | None = None
    ):
        self.script = list(script)
        self.models = models
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def validate_request(self, body: dict[str, Any]) -> None:
        (STREAMING if body.get("stream") else NON_STREAMING).validate_python(body)
        for message in body["messages"]:  # the params type checks messages lazily: check each one now
            MESSAGE.validate_python(message)
            if message["role"] == "tool" and not message.get("tool_call_id"):
                raise ValueError("a tool message without tool_call_id")
        for tool in body.get("tools") or []:
            TOOL.validate_python(tool)
        calls = {c["id"] for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []}
        for message in body["messages"]:
            if message["role"] == "tool" and message["tool_call_id"] not in calls:
                raise ValueError(f"tool result for unknown call id {message['tool_call_id']!r}")

    def chat(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.validate_request(body)
        self.requests.append(body)
        if not self.script:
            raise AssertionError("the scripted model was asked more often than scripted")
        reply = self.script.pop(0)(body)
        content = reply.get("content") or ""
        calls = [
            {
                "id": f"call_{len(self.requests)}_{i}",
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])},
            }
            for i, c in enumerate(reply.get("tool_calls") or [])
        ]
        base = {"id": f"chatcmpl-{len(self.requests)}", "created": CREATED, "model": body["model"]}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content or None}
            if calls:
                message["tool_calls"] = calls
            payload = {
                **base,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            }
            ChatCompletion.model_validate(payload)
            return [payload]
        chunks: list[dict[str, Any]] = []

        def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            part = {
                **base,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            ChatCompletionChunk.model_validate(part)
            chunks.append(part)

        chunk({"role": "assistant", "content": ""})
        for i in range(0, len(content), 5):
            chunk({"content": content[i : i + 5]})
        for index, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": index,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": args[:half]},
                        }
                    ]
                }
            )
            chunk({"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]})
        chunk({}, "tool_calls" if calls else "stop")
        return chunks

    def model_list(self) -> dict[str, Any]:
        data = [{"id": m, "object": "model", "created": CREATED, "owned_by": "local"} for m in self.models]
        for item in data:
            Model.model_validate(item)
        return {"object": "list", "data": data}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                    self._send(401, json.dumps({"error": {"message": "invalid api key", "type": "auth"}}).encode())
                    return False
                return True

            def do_GET(self) -> None:
                if self.path == "/v1/models" and self._authorised():
                    self._send(200, json.dumps(fake.model_list()).encode())
                elif self.path != "/v1/models":
                    self._send(404, json.dumps({"error": {"message": "not found"}}).encode())

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, json.dumps({"error": {"message": "not found"}}).encode())
                    return
                if not self._authorised():
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                try:
                    parts = fake.chat(body)
                except Exception as exc:  # a bad request or script: the test sees it in fake.errors
                    fake.errors.append(f"{type(exc).__name__}: {exc}")
                    self._send(400, json.dumps({"error": {"message": str(exc), "type": "invalid_request"}}).encode())
                    return
                if body.get("stream"):
                    data = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in parts) + b"data: [DONE]\n\n"
                    self._send(200, data, "text/event-stream")
                else:
                    self._send(200, json.dumps(parts[0]).encode())

        return Handler
