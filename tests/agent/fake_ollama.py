"""A local stand-in for Ollama's HTTP API, speaking the wire format the real ``ollama`` client expects.

Serves ``/api/chat`` (non-streaming JSON and streaming NDJSON), ``/api/tags`` and ``/api/version`` on
127.0.0.1. Every request body is validated against the client's own ``ChatRequest`` model (and each
of its messages against ``Message``) and every response against ``ChatResponse`` / ``ListResponse``
before it is sent, so a drift in the format fails the test here rather than passing silently.
Replies come from a script: a list of functions ``(request_body) -> message dict``, played in
order (a scripted model).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ollama._types import ChatRequest, ChatResponse, ListResponse, Message
from pydantic import BaseModel

Reply = Callable[[dict[str, Any]], dict[str, Any]]


class VersionResponse(BaseModel):
    """``/api/version`` (the ollama client has no model for it)."""

    version: str


CREATED = "2026-11-25T07:00:00.000000Z"


class FakeOllama:
    def __init__(self, script: list[Reply], models: tuple[str, ...] = ("qwen2.5:7b",), version: str = "0.6.3"):
        self.script = list(script)
        self.models = models
        self.version = version
        self.requests: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeOllama":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- responses -------------------------------------------------------------------------------
    def chat(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The response objects for one ``/api/chat`` request (one, or several when streaming)."""
        ChatRequest.model_validate(body)  # what the real client sends must be a valid request
        for message in body.get("messages") or []:  # ChatRequest also accepts any mapping as a message
            Message.model_validate(message)
        self.requests.append(body)
        if not self.script:
            raise AssertionError("the scripted model was asked more often than scripted")
        message = self.script.pop(0)(body)
        base = {"model": body["model"], "created_at": CREATED}
        if not body.get("stream"):
            parts = [
                {
                    **base,
                    "message": {"role": "assistant", **message},
                    "done": True,
                    "done_reason": "stop",
                    "total_duration": 1_000_000,
                    "eval_count": 5,
                }
            ]
        else:
            parts = []
            content = message.get("content") or ""
            chunks = [content[i : i + 7] for i in range(0, len(content), 7)]
            for chunk in chunks:
                parts.append({**base, "message": {"role": "assistant", "content": chunk}, "done": False})
            if message.get("tool_calls"):
                parts.append(
                    {
                        **base,
                        "message": {"role": "assistant", "content": "", "tool_calls": message["tool_calls"]},
                        "done": False,
                    }
                )
            parts.append(
                {
                    **base,
                    "message": {"role": "assistant", "content": ""},
                    "done": True,
                    "done_reason": "stop",
                    "eval_count": 5,
                }
            )
        for part in parts:
            ChatResponse.model_validate(part)
        return parts

    def tags(self) -> dict[str, Any]:
        payload = {
            "models": [
                {
                    "name": m,
                    "model": m,
                    "modified_at": CREATED,
                    "size": 4_683_087_332,
                    "digest": "a" * 64,
                    "details": {
                        "format": "gguf",
                        "family": "qwen2",
                        "parameter_size": "7.6B",
                        "quantization_level": "Q4_K_M",
                    },
                }
                for m in self.models
            ]
        }
        ListResponse.model_validate(payload)
        return payload

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

            def do_GET(self) -> None:
                if self.path == "/api/tags":
                    self._send(200, json.dumps(fake.tags()).encode())
                elif self.path == "/api/version":
                    payload = {"version": fake.version}
                    VersionResponse.model_validate(payload)
                    self._send(200, json.dumps(payload).encode())
                else:
                    self._send(404, b'{"error":"not found"}')

            def do_POST(self) -> None:
                if self.path != "/api/chat":
                    self._send(404, b'{"error":"not found"}')
                    return
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                try:
                    parts = fake.chat(body)
                except Exception as exc:  # a bad request or script: the test sees it in fake.errors
                    fake.errors.append(f"{type(exc).__name__}: {exc}")
                    self._send(400, json.dumps({"error": str(exc)}).encode())
                    return
                if body.get("stream"):
                    data = b"".join(json.dumps(p).encode() + b"\n" for p in parts)
                    self._send(200, data, "application/x-ndjson")
                else:
                    self._send(200, json.dumps(parts[0]).encode())

        return Handler


def tool_call(name: str, arguments: dict[str, Any]) -> Reply:
    return lambda body: {"content": "", "tool_calls": [{"function": {"name": name, "arguments": arguments}}]}


def answer(text: str | Callable[[dict[str, Any]], str]) -> Reply:
    return lambda body: {"content": text(body) if callable(text) else text}


def last_tool_result(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON content of the last ``tool`` message the client sent back."""
    tool_messages = [m for m in body["messages"] if m.get("role") == "tool"]
    if not tool_messages:
        raise AssertionError("no tool result was sent back to the model")
    return json.loads(tool_messages[-1]["content"])
