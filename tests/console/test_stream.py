"""WS /v1/stream: hello, ingest events as committed, device filter, API key, and a client that
never reads neither slows ingest nor grows without bound (against a real uvicorn server)."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from typing import Any

import httpx
import pandas as pd
import pytest
from console.servers import live_server
from live.fakes import packet


def _stamp(k: int) -> str:
    return (pd.Timestamp("2026-01-01T00:00:00Z") + pd.Timedelta(minutes=15 * k)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_stream_hello_ingest_filter_and_key(client_for) -> None:
    from starlette.websockets import WebSocketDisconnect

    with client_for(api_key="s3cret") as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/v1/stream") as ws:
                ws.receive_json()
        assert refused.value.code == 1008
        headers = {"X-API-Key": "s3cret"}
        with (
            client.websocket_connect("/v1/stream?token=s3cret") as every,
            client.websocket_connect("/v1/stream?device_id=B", headers=headers) as only_b,
        ):
            hello = every.receive_json()
            assert hello["type"] == "hello" and hello["devices"] is None and hello["queue"] == 256
            assert only_b.receive_json()["devices"] == ["B"]
            both = packet("A", 2, _stamp(0)) + packet("B", 3, _stamp(0))
            answer = client.post("/v1/ingest", json={"readings": both}, headers=headers)
            assert answer.status_code == 200 and answer.json()["stored"] == 5
            event = every.receive_json()
            assert event["type"] == "ingest" and event["devices"] == ["A", "B"]
            assert [r["CellID"] for r in event["readings"]] == ["A-1", "A-2", "B-1", "B-2", "B-3"]
            assert [s["CellID"] for s in event["scores"]] == ["A-1", "A-2", "B-1", "B-2", "B-3"]
            assert event["readings"][0]["CellVoltage"] == pytest.approx(2.231)
            assert event["model"] == {"name": "anomaly_hybrid", "version": "v0001"}
            mine = only_b.receive_json()  # the same event, cut down to device B
            assert mine["devices"] == ["B"] and [r["CellNumber"] for r in mine["readings"]] == [1, 2, 3]
            assert [s["CellID"] for s in mine["scores"]] == ["B-1", "B-2", "B-3"]
            client.post("/v1/ingest", json={"readings": packet("A", 2, _stamp(1))}, headers=headers)
            client.post("/v1/ingest", json={"readings": packet("B", 3, _stamp(1))}, headers=headers)
            assert every.receive_json()["devices"] == ["A"]
            assert every.receive_json()["devices"] == ["B"]
            assert only_b.receive_json()["readings"][0]["Timestamp"] == _stamp(1)  # A's event skipped


def _raw_client(host: str, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    name, port = host.split(":")
    sock = socket.create_connection((name, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    return sock


def test_real_server_stuck_client_does_not_block_ingest_or_others(make_app) -> None:
    from websockets.sync.client import connect

    app = make_app(stream_queue=8, stream_stuck_seconds=30)
    service = app.state.service
    with live_server(app) as host:
        stuck = _raw_client(host, "/v1/stream")
        try:
            with (
                connect(f"ws://{host}/v1/stream?device_id=B", max_size=None) as only_b,
                connect(f"ws://{host}/v1/stream", max_size=None) as every,
                httpx.Client(base_url=f"http://{host}", timeout=10) as http,
            ):
                assert json.loads(every.recv(5))["type"] == "hello"
                assert json.loads(only_b.recv(5))["type"] == "hello"
                deadline = time.monotonic() + 5
                while len(service.events._subscriptions) < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert len(service.events._subscriptions) == 3
                n = 60
                seen: list[dict[str, Any]] = []
                mine: list[dict[str, Any]] = []
                for k in range(n):  # big events (48 cells) so the stuck client's socket fills up
                    device = "B" if k % 3 == 0 else "A"
                    r = http.post(
                        "/v1/ingest",
                        json={"readings": packet(device, 48, _stamp(k), voltage=2.206, CellTemperature=25.0)},
                    )
                    assert r.status_code == 200 and r.json()["stored"] == 48
                    seen.append(json.loads(every.recv(5)))  # the reading client keeps up, in order
                while len(mine) < n // 3:
                    mine.append(json.loads(only_b.recv(5)))
                assert [e["readings"][0]["Timestamp"] for e in seen] == [_stamp(k) for k in range(n)]
                assert all(e["type"] == "ingest" for e in seen + mine)
                assert {tuple(e["devices"]) for e in mine} == {("B",)}
                assert [e["readings"][0]["Timestamp"] for e in mine] == [_stamp(k) for k in range(0, n, 3)]
                # the client that never reads holds at most its queue; the rest was dropped, not buffered
                subs = service.events._subscriptions
                assert max(len(s.events) for s in subs) <= 8
                assert service.events.published == n
                assert app.state.stream_stats.connected == 3
        finally:
            stuck.close()


class _StuckSocket:
    """The transport of a client that stopped reading: after the hello, ``send_text`` never returns."""

    def __init__(self) -> None:
        import asyncio

        from starlette.websockets import WebSocketState

        self.client_state = WebSocketState.CONNECTED
        self.sent: list[str] = []
        self.closed_with: int | None = None
        self._forever = asyncio.Event()

    async def accept(self) -> None:
        pass

    async def send_text(self, text: str) -> None:
        self.sent.append(text)
        if len(self.sent) > 1:
            await self._forever.wait()

    async def receive(self) -> dict[str, Any]:
        await self._forever.wait()
        return {"type": "websocket.disconnect"}

    async def close(self, code: int = 1000) -> None:
        self.closed_with = code


def test_stuck_client_is_bounded_dropped_and_disconnected_while_publishing_stays_o1() -> None:
    import asyncio
    import threading

    from bms_live import stream
    from bms_live.events import EventBus

    bus = EventBus()
    stats = stream.StreamStats()
    sock = _StuckSocket()
    timings: list[float] = []

    async def main() -> None:
        task = asyncio.create_task(stream.serve(sock, bus, None, 16, 0.5, stats, stream._EncodeCache()))  # type: ignore[arg-type]
        while not bus._subscriptions:
            await asyncio.sleep(0.005)

        def publisher() -> None:  # the ingest thread
            for k in range(5000):
                t0 = time.perf_counter()
                bus.publish({"type": "ingest", "devices": ["A"], "readings": [{"k": k}], "scores": [], "alerts": []})
                timings.append(time.perf_counter() - t0)

        thread = threading.Thread(target=publisher)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.01)
        sub = bus._subscriptions[0]
        # bounded: the queue, plus at most one drained batch in the sender; the oldest were dropped
        assert len(sub.events) <= 16 and sub.dropped >= 5000 - 16 - stream.BATCH - 1
        await asyncio.wait_for(task, 5)  # the stuck client is let go after stuck_seconds

    asyncio.run(main())
    assert json.loads(sock.sent[0])["type"] == "hello" and len(sock.sent) == 2
    assert stats.disconnected_stuck == 1 and stats.connected == 0 and bus._subscriptions == []
    assert sock.closed_with == stream.CLOSE_STUCK
    assert sorted(timings)[len(timings) // 2] < 1e-3  # a publish is an append and a wake-up, never a wait


def test_stream_pushes_alert_status_changes(client_for) -> None:
    with client_for() as client:
        with client.websocket_connect("/v1/stream?device_id=A") as ws:
            assert ws.receive_json()["type"] == "hello"
            flagged = packet("A", 2, _stamp(0), voltage=2.30)  # the stand-in model flags |V - 2.23| > 0.04
            answer = client.post("/v1/ingest", json={"readings": flagged}).json()
            assert answer["flagged"] == 2 and len(answer["alerts"]) == 2
            event = ws.receive_json()
            assert event["type"] == "ingest" and [a["alert_id"] for a in event["alerts"]] == [
                a["alert_id"] for a in answer["alerts"]
            ]
            opened = [ws.receive_json(), ws.receive_json()]
            assert [(m["type"], m["event"], m["alert"]["status"]) for m in opened] == [("alert", "opened", "open")] * 2
            assert [m["alert"]["cell_id"] for m in opened] == ["A-1", "A-2"]
            first = opened[0]["alert"]["alert_id"]
            client.post(f"/v1/alerts/{first}/acknowledge", json={"by": "op"})
            client.post(f"/v1/alerts/{first}/resolve")
            ack, done = ws.receive_json(), ws.receive_json()
            assert (ack["event"], ack["alert"]["status"], ack["alert"]["acknowledged_by"]) == (
                "acknowledged",
                "acknowledged",
                "op",
            )
            assert (done["event"], done["alert"]["status"], done["alert"]["alert_id"]) == (
                "resolved",
                "resolved",
                first,
            )
