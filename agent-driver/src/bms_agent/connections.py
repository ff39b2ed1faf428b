"""A pool of MCP stdio connections, one subprocess per server, with timeouts everywhere.

Each server runs in its own holder task that keeps the ``mcp.Client`` context open, so
the five servers start concurrently and a call can be made from any task. A server that
does not answer ``initialize`` in time, exits during a call, or exceeds a call's timeout
turns into a :class:`ToolCallError` naming the server, the tool and what happened (with
the tail of the server's stderr, which is captured to a log file rather than mixed into
the terminal). Nothing waits forever.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .servers import ServerSpec

log = logging.getLogger("bms.agent")

ProgressFn = Callable[[float, float | None, str | None], Awaitable[None]]


class ToolCallError(Exception):
    """A tool call that did not produce an ``ok`` envelope.

    ``kind`` is ``error`` (the tool answered ``status: "error"``), ``timeout`` (no answer in
    time: the server is hung or too slow), ``crashed`` (the server process went away) or
    ``start`` (the server could not be started / did not answer ``initialize``).
    """

    def __init__(
        self,
        server: str,
        tool: str,
        kind: str,
        message: str,
        envelope: dict[str, Any] | None = None,
        stderr_tail: str = "",
    ):
        self.server, self.tool, self.kind, self.envelope, self.stderr_tail = server, tool, kind, envelope, stderr_tail
        self.detail = message
        text = f"{server} server, tool {tool}: {message}"
        if stderr_tail:
            text += "\n  last lines of the server's stderr:\n    " + "\n    ".join(stderr_tail.splitlines())
        super().__init__(text)


@dataclass
class CallResult:
    """One successful tool call: the envelope and where the time went."""

    server: str
    tool: str
    arguments: dict[str, Any]
    envelope: dict[str, Any]
    seconds: float  # wall time seen by the client (protocol + tool)

    @property
    def tool_seconds(self) -> float:
        """Time the tool itself reported (``data.seconds``), else the wall time."""
        value = (self.envelope.get("data") or {}).get("seconds")
        return float(value) if isinstance(value, (int, float)) else self.seconds


@dataclass
class _Connection:
    spec: ServerSpec
    stderr_path: Path | None
    ready: anyio.Event = field(default_factory=anyio.Event)
    stop: anyio.Event = field(default_factory=anyio.Event)
    closed: anyio.Event = field(default_factory=anyio.Event)
    client: Any = None
    failure: BaseException | None = None
    start_seconds: float = 0.0
    tools: list[Any] = field(default_factory=list)
    stderr_offset: int = 0
    stopped_because: str = ""
    scope: anyio.CancelScope = field(
        default_factory=anyio.CancelScope
    )  # cancels a server stuck before/after the protocol

    def stderr_tail(self) -> str:
        return tail(self.stderr_path, offset=self.stderr_offset)


def envelope_of(result: Any) -> dict[str, Any]:
    """The tool envelope of a ``CallToolResult`` (structured content, else the JSON text)."""
    if getattr(result, "structured_content", None):
        return dict(result.structured_content)
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        if text:
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return {"status": "error" if result.is_error else "ok", "message": text, "data": {}}
            if isinstance(value, dict):
                return value
    return {"status": "error" if getattr(result, "is_error", False) else "ok", "message": "", "data": {}}


def tail(path: Path | None, lines: int = 12, offset: int = 0) -> str:
    """The last ``lines`` lines of a log file written after byte ``offset`` ('' when none)."""
    if path is None or not path.exists():
        return ""
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(offset, size - 16_384))
        text = handle.read().decode("utf-8", "replace")
    return "\n".join(text.splitlines()[-lines:])


class ServerPool:
    """Start servers on demand and call their tools.

    Use as ``async with ServerPool(specs, env, log_dir) as pool: await pool.call(...)``.
    """

    def __init__(
        self,
        specs: dict[str, ServerSpec],
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        start_timeout: float = 60.0,
    ):
        self.specs = specs
        self.env = dict(env or {})
        self.log_dir = log_dir
        self.start_timeout = start_timeout
        self._connections: dict[str, _Connection] = {}
        self._stack = AsyncExitStack()
        self._tg: Any = None

    async def __aenter__(self) -> "ServerPool":
        self._tg = await self._stack.enter_async_context(anyio.create_task_group())
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        for conn in self._connections.values():
            conn.stop.set()
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(15):
                for conn in self._connections.values():
                    await conn.closed.wait()
        for conn in self._connections.values():  # still not closed (stuck in initialize): cut it off
            conn.scope.cancel()
        try:
            return bool(await self._stack.__aexit__(exc_type, exc, tb))
        except BaseExceptionGroup as group:
            # an error of the code inside ``async with pool`` comes back wrapped by the task group:
            # hand the caller its own exception, so ``except TimeoutError`` etc. work as written
            if exc is not None and _contains(group, exc):
                raise exc.with_traceback(tb) from None
            raise

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, *names: str) -> None:
        """Begin starting ``names`` in the background (they start concurrently)."""
        for name in names:
            if name in self._connections:
                continue
            if name not in self.specs:
                raise KeyError(f"unknown server '{name}': known are {', '.join(self.specs)}")
            stderr_path = None
            if self.log_dir is not None:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                stderr_path = self.log_dir / f"{name}.stderr.log"
            conn = _Connection(spec=self.specs[name], stderr_path=stderr_path)
            if stderr_path is not None and stderr_path.exists():
                conn.stderr_offset = stderr_path.stat().st_size
            self._connections[name] = conn
            self._tg.start_soon(self._hold, conn)

    async def _hold(self, conn: _Connection) -> None:
        from mcp import Client
        from mcp.client.stdio import stdio_client

        started = time.perf_counter()
        try:
            with conn.scope, open(conn.stderr_path or "/dev/null", "a", encoding="utf-8") as errlog:
                transport = stdio_client(conn.spec.params(self.env), errlog=errlog)
                async with Client(transport, mode="legacy") as client:
                    conn.client = client
                    conn.tools = list((await client.list_tools()).tools)
                    conn.start_seconds = time.perf_counter() - started
                    conn.ready.set()
                    await conn.stop.wait()
        except Exception as exc:  # start failure or a connection that died: recorded, reported by callers
            conn.failure = exc
            log.debug("server %s connection ended: %r", conn.spec.name, exc)
        finally:
            conn.client = None if conn.failure else conn.client
            conn.ready.set()
            conn.closed.set()

    async def connect(self, name: str) -> _Connection:
        """The ready connection to ``name`` (starting it if needed)."""
        self.start(name)
        conn = self._connections[name]
        with anyio.move_on_after(self.start_timeout) as scope:
            await conn.ready.wait()
        if scope.cancelled_caught:
            conn.failure = TimeoutError(f"no answer to initialize within {self.start_timeout:g} s")
            conn.stop.set()
            conn.scope.cancel()  # stop.wait() is never reached while initialize hangs
            raise ToolCallError(
                name,
                "initialize",
                "start",
                f"the server did not answer initialize within {self.start_timeout:g} s "
                f"({conn.spec.command} {' '.join(conn.spec.args)})",
                stderr_tail=conn.stderr_tail(),
            )
        if conn.client is None or conn.failure is not None:
            raise ToolCallError(
                name,
                "initialize",
                "start",
                f"the server could not be started ({conn.spec.command} {' '.join(conn.spec.args)}): "
                f"{_describe(conn.failure)}",
                stderr_tail=conn.stderr_tail(),
            )
        return conn

    async def list_tools(self, name: str) -> list[Any]:
        return list((await self.connect(name)).tools)

    def start_seconds(self, name: str) -> float:
        conn = self._connections.get(name)
        return conn.start_seconds if conn else 0.0

    def stderr_path(self, name: str) -> Path | None:
        conn = self._connections.get(name)
        return conn.stderr_path if conn else None

    async def call(
        self, server: str, tool: str, arguments: dict[str, Any], timeout: float, progress: ProgressFn | None = None
    ) -> CallResult:
        """Call one tool; an error envelope, a timeout or a dead server raise :class:`ToolCallError`."""
        from mcp.shared.exceptions import MCPError

        conn = await self.connect(server)
        if conn.closed.is_set() or conn.stop.is_set():
            reason = conn.stopped_because or "the server is no longer running"
            raise ToolCallError(server, tool, "crashed", reason, stderr_tail=conn.stderr_tail())
        start = time.perf_counter()
        try:
            result = await conn.client.call_tool(
                tool, arguments, read_timeout_seconds=timeout, progress_callback=progress
            )
        except MCPError as exc:
            from mcp_types import REQUEST_TIMEOUT

            if exc.code == REQUEST_TIMEOUT:
                conn.stopped_because = f"the server was stopped after {tool} timed out"
                conn.stop.set()  # a hung server is stopped (stdin closed, then killed)
                raise ToolCallError(
                    server,
                    tool,
                    "timeout",
                    f"no answer within {timeout:g} s: the server is hung or the call needs a longer "
                    "timeout (--timeout); the server was stopped",
                    stderr_tail=conn.stderr_tail(),
                ) from None
            from mcp_types import CONNECTION_CLOSED

            if exc.code == CONNECTION_CLOSED:
                conn.stopped_because = f"the server process exited during {tool}"
                await self._wait_closed(conn)
                raise ToolCallError(
                    server,
                    tool,
                    "crashed",
                    f"the server process exited during the call ({exc.message})",
                    stderr_tail=conn.stderr_tail(),
                ) from None
            raise ToolCallError(server, tool, "error", f"protocol error {exc.code}: {exc.message}") from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            raise ToolCallError(
                server,
                tool,
                "crashed",
                f"the connection to the server broke ({type(exc).__name__})",
                stderr_tail=conn.stderr_tail(),
            ) from None
        seconds = time.perf_counter() - start
        envelope = envelope_of(result)
        if result.is_error or envelope.get("status") != "ok":
            raise ToolCallError(
                server, tool, "error", envelope.get("message") or "the tool reported an error", envelope=envelope
            )
        return CallResult(server=server, tool=tool, arguments=dict(arguments), envelope=envelope, seconds=seconds)

    @staticmethod
    async def _wait_closed(conn: _Connection, seconds: float = 3.0) -> None:
        with anyio.move_on_after(seconds):
            conn.stop.set()
            await conn.closed.wait()


def _contains(group: BaseExceptionGroup, exc: BaseException) -> bool:
    return any(e is exc or (isinstance(e, BaseExceptionGroup) and _contains(e, exc)) for e in group.exceptions)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown reason"
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"
