"""ASGI middleware: request size limit and per-route request metrics (plain ASGI, no per-request
task or body copy, so they cost microseconds)."""

from __future__ import annotations

import json
import time
from typing import Any

from .metrics import ServiceMetrics

Scope = dict[str, Any]


async def _send_json(send: Any, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """413 for a body above ``max_bytes``: from ``Content-Length`` at once, or, for a chunked body,
    while reading it (at most ``max_bytes`` are buffered)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _message(self, size: int | None) -> dict[str, Any]:
        shown = f"{size} bytes" if size is not None else "more than that"
        return {
            "detail": f"request body too large: {shown}, the limit is {self.max_bytes} bytes "
            "(BMS_LIVE_MAX_BODY_BYTES); send fewer readings per request",
            "errors": [{"field": "body", "reason": "too large"}],
        }

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "invalid Content-Length header", "errors": []})
                    return
                if size > self.max_bytes:
                    await _send_json(send, 413, self._message(size))
                    return
                break
        if not any(name == b"content-length" for name, _ in scope.get("headers", [])):
            # Chunked body: read it here (bounded), so the limit holds before the app parses anything.
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client went away
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    await _send_json(send, 413, self._message(None))
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)


class RequestMetrics:
    """Count requests and time them per route template (``/v1/anomaly``, not raw paths)."""

    def __init__(self, app: Any, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            self.metrics.requests.inc(route=path, method=scope.get("method", ""), status=str(status))
            self.metrics.latency.observe(elapsed, route=path)
