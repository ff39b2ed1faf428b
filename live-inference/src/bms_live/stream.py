"""``WS /v1/stream``: every event the ingest path publishes on the :class:`~bms_live.events.EventBus`,
pushed to WebSocket clients as JSON text messages.

Messages (one JSON object per WebSocket text message, ``type`` says which):

* ``{"type": "hello", "server_time", "devices", "queue", "stuck_seconds", "types"}`` - first, once;
  ``devices`` is the filter (``null`` = every device).
* ``{"type": "ingest", "devices", "readings", "scores", "alerts", "model"}`` - what one
  ``POST /v1/ingest`` committed, exactly as the bus carries it (``readings[i]`` and ``scores[i]``
  are the same reading; with a device filter only that device's readings/scores/alerts remain).
* ``{"type": "alert", "event": "opened"|"acknowledged"|"resolved", "alert": {...}, "devices"}`` - an
  alert changed status (``alert`` is the ``GET /v1/alerts`` item).
* ``{"type": "dropped", "count", "total"}`` - this client fell behind and lost ``count`` events
  (its oldest; ``total`` since it connected).

Each client has a bounded queue (``BMS_STREAM_QUEUE`` events) filled by the publishing thread
with an O(1) append; the publisher wakes the client's sender task with
``loop.call_soon_threadsafe`` and never waits for it. A client whose socket has not accepted a
message for ``BMS_STREAM_STUCK_SECONDS`` is disconnected (close code 1008).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from .events import EventBus, Subscription

log = logging.getLogger("bms.live.stream")

MESSAGE_TYPES = ("hello", "ingest", "alert", "dropped")
#: events sent per wake-up before the sender yields to the loop again
BATCH = 64
#: close code for a client that stopped reading (policy violation) / a wrong key
CLOSE_STUCK = 1008
CLOSE_UNAUTHORIZED = 1008


class _EncodeCache:
    """JSON text of recent events, so N clients cost one ``json.dumps`` per event (thread-safe)."""

    def __init__(self, size: int = 512) -> None:
        self._items: OrderedDict[int, tuple[dict[str, Any], str]] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def text(self, event: dict[str, Any]) -> str:
        key = id(event)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is event:
                return hit[1]
        text = encode(event)
        with self._lock:
            self._items[key] = (event, text)  # the event is kept alive with it: its id is not reused
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return text


def _clean(value: Any) -> Any:
    """NaN/inf -> null, numpy scalars -> Python (only used when plain json.dumps refuses)."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else None
    if hasattr(value, "item"):  # numpy scalar
        return _clean(value.item())
    return value


def encode(event: dict[str, Any]) -> str:
    """Strict JSON (no NaN: browsers' JSON.parse refuses it)."""
    try:
        return json.dumps(event, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return json.dumps(_clean(event), allow_nan=False, separators=(",", ":"), default=str)


def filter_event(event: dict[str, Any], devices: frozenset[str] | None) -> dict[str, Any]:
    """The part of ``event`` about ``devices`` (the event itself when all of it is)."""
    if devices is None or event.get("type") != "ingest":
        return event
    present = set(event.get("devices", ()))
    if present <= devices:
        return event
    readings = event.get("readings", [])
    keep = [i for i, r in enumerate(readings) if str(r.get("DeviceID")) in devices]
    scores = event.get("scores", [])
    return {
        **event,
        "devices": sorted(present & devices),
        "readings": [readings[i] for i in keep],
        "scores": [scores[i] for i in keep if i < len(scores)],
        "alerts": [a for a in event.get("alerts", []) if str(a.get("device_id")) in devices],
    }


def key_ok(websocket: WebSocket, expected: str | None) -> bool:
    """The REST API's key, from ``X-API-Key``, ``Authorization: Bearer`` or ``?token=`` / ``?api_key=``
    (browsers cannot set headers on a WebSocket)."""
    if expected is None:
        return True
    key = websocket.headers.get("x-api-key")
    if key is None:
        auth = websocket.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
    if key is None:
        key = websocket.query_params.get("token") or websocket.query_params.get("api_key")
    return key is not None and secrets.compare_digest(key.encode(), expected.encode())


class StreamStats:
    """Counters for ``/health`` and the tests."""

    def __init__(self) -> None:
        self.connected = 0
        self.total = 0
        self.sent = 0
        self.dropped = 0
        self.disconnected_stuck = 0


async def serve(
    websocket: WebSocket,
    bus: EventBus,
    devices: list[str] | None,
    queue: int,
    stuck_seconds: float,
    stats: StreamStats,
    cache: _EncodeCache,
) -> None:
    """Run one client until it disconnects (or is disconnected for not reading)."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    pending = threading.Event()  # a wake-up is already scheduled: do not flood the loop

    def notify() -> None:  # called on the publishing thread: O(1), never blocks
        if pending.is_set():
            return
        pending.set()
        try:
            loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # the loop is closed (shutdown)
            pass

    await websocket.accept()
    wanted = frozenset(devices) if devices else None
    sub: Subscription = bus.subscribe(maxsize=queue, devices=set(wanted) if wanted else None, notify=notify)
    stats.connected += 1
    stats.total += 1
    closed = asyncio.Event()

    async def receiver() -> None:  # notices the client going away; client messages are ignored
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        closed.set()
        wake.set()

    async def send(text: str) -> bool:
        try:
            await asyncio.wait_for(websocket.send_text(text), timeout=stuck_seconds)
            stats.sent += 1
            return True
        except TimeoutError:
            stats.disconnected_stuck += 1
            log.warning("stream client stuck for %.1fs (not reading): disconnected", stuck_seconds)
            return False
        except (WebSocketDisconnect, RuntimeError, OSError):
            return False

    listen = asyncio.create_task(receiver())
    reported = 0
    try:
        hello = {
            "type": "hello",
            "server_time": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
            "devices": sorted(wanted) if wanted else None,
            "queue": queue,
            "stuck_seconds": stuck_seconds,
            "types": list(MESSAGE_TYPES),
        }
        if not await send(encode(hello)):
            return
        while not closed.is_set():
            await wake.wait()
            wake.clear()
            pending.clear()
            while not closed.is_set():
                events = sub.drain(BATCH)
                if sub.dropped > reported:
                    lost = sub.dropped - reported
                    reported = sub.dropped
                    stats.dropped += lost
                    if not await send(encode({"type": "dropped", "count": lost, "total": reported})):
                        return
                if not events:
                    break
                for event in events:
                    shown = filter_event(event, wanted)
                    text = cache.text(event) if shown is event else encode(shown)
                    if not await send(text):
                        return
    finally:
        bus.unsubscribe(sub)
        stats.connected -= 1
        listen.cancel()
        if websocket.client_state == WebSocketState.CONNECTED and not closed.is_set():
            try:
                await asyncio.wait_for(websocket.close(code=CLOSE_STUCK), timeout=1.0)
            except (TimeoutError, RuntimeError, OSError, WebSocketDisconnect):
                pass
