"""A thin MCP layer shared by the five servers.

Each server declares its tools with a pydantic model for the arguments and a plain
function for the logic::

    server = ToolServer("load-preprocessdata-mcp", packages=["pandas", "miceforest"])

    class CleanArgs(ToolArgs):
        data_path: str = Field(description="CSV or Parquet file")

    @server.tool(CleanArgs, title="Clean and filter BMS data", read_only=False)
    def clean_and_filter_data(args: CleanArgs, ctx: ToolContext) -> ToolOutput:
        ...

The layer validates the arguments (a readable error naming the field), opens a run
step (folder, log, manifest), runs the function in a worker thread so the server keeps
answering (and can send MCP progress notifications), turns :class:`BMSError` into an
``status: "error"`` envelope, removes partial artifacts on failure, and returns the
envelope both as structured content and as JSON text. Nothing is printed to stdout.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BMSError
from .models import Envelope
from .runtime import limit_threads, versions

log = logging.getLogger("bms.server")


class ToolArgs(BaseModel):
    """Base of every tool's argument model: unknown arguments are refused."""

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(
        default=None, description="Existing run id to write into (a pipeline passes one so all calls share a folder)"
    )


@dataclass
class ToolOutput:
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    """What a tool function gets besides its arguments."""

    run: Any  # bms_schema.runs.Run, or None for tools that write nothing
    server: "ToolServer"
    _progress: Callable[[float, str | None], None] | None = None

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; forwarded as MCP progress when the caller asked for it."""
        if self._progress is not None:
            try:
                self._progress(min(max(float(fraction), 0.0), 1.0), message)
            except Exception:  # progress must never break a tool
                log.debug("progress notification failed", exc_info=True)
        if message:
            log.info("progress %.0f%%: %s", fraction * 100, message)


@dataclass
class _Tool:
    name: str
    description: str
    args_model: type[ToolArgs]
    func: Callable[[Any, ToolContext], ToolOutput]
    annotations: dict[str, Any]
    writes_run: bool
    exclusive: bool


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unknown argument"
        parts.append(f"'{where}': {msg}")
    return "invalid arguments: " + "; ".join(parts)


class ToolServer:
    def __init__(self, name: str, packages: list[str] | None = None, instructions: str = "", version: str = "0.1.0"):
        self.name = name
        self.packages = packages or []
        self.instructions = instructions
        self.version = version
        self.tools: dict[str, _Tool] = {}
        self.model_names: list[str] = []
        self._lock: Any = None

    # -- declaration -------------------------------------------------------------------
    def tool(
        self,
        args_model: type[ToolArgs],
        *,
        title: str,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        writes_run: bool = True,
        exclusive: bool = True,
        name: str | None = None,
    ) -> Callable[[Callable[[Any, ToolContext], ToolOutput]], Callable[[Any, ToolContext], ToolOutput]]:
        def decorator(func: Callable[[Any, ToolContext], ToolOutput]) -> Callable[[Any, ToolContext], ToolOutput]:
            tool_name = name or func.__name__
            self.tools[tool_name] = _Tool(
                name=tool_name,
                description=(func.__doc__ or title).strip(),
                args_model=args_model,
                func=func,
                annotations={
                    "title": title,
                    "read_only_hint": read_only,
                    "destructive_hint": destructive,
                    "idempotent_hint": idempotent,
                    "open_world_hint": False,
                },
                writes_run=writes_run,
                exclusive=exclusive,
            )
            return func

        return decorator

    def add_health_check(self, models: list[str] | None = None, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        """Register ``health_check``: versions, workspace writable, which models exist. No heavy imports."""
        self.model_names = list(models or [])
        server = self

        class HealthArgs(ToolArgs):
            pass

        def health_check(args: HealthArgs, ctx: ToolContext) -> ToolOutput:
            """Fast server check: library versions, workspace writable, registered models. Imports nothing heavy."""
            data = health_payload(server.name, server.packages, server.model_names)
            if extra is not None:
                data.update(extra())
            status = "healthy" if data["workspace"]["writable"] else "degraded"
            data["status"] = status
            return ToolOutput(message=f"{server.name} is {status}", data=data)

        self.tool(HealthArgs, title="Health check", read_only=True, idempotent=True, writes_run=False,
                  exclusive=False)(health_check)

    # -- execution ---------------------------------------------------------------------
    def call(self, name: str, arguments: dict[str, Any] | None, progress: Callable[[float, str | None], None] | None = None) -> Envelope:
        """Validate, run and wrap one tool call (synchronous; used by the MCP handler and tests)."""
        from .runs import Run

        tool = self.tools.get(name)
        if tool is None:
            return Envelope(status="error", message=f"unknown tool '{name}': this server has {', '.join(sorted(self.tools))}")
        try:
            args = tool.args_model.model_validate(arguments or {})
        except ValidationError as exc:
            return Envelope(status="error", message=validation_message(exc))
        run = None
        try:
            if tool.writes_run:
                run = Run(tool=name, server=self.name, parameters=args.model_dump(), run_id=args.run_id)
        except BMSError as exc:
            return Envelope(status="error", message=str(exc))
        ctx = ToolContext(run=run, server=self, _progress=progress)
        start = time.perf_counter()
        try:
            output = tool.func(args, ctx)
            status, message, data = "ok", output.message, output.data
        except BMSError as exc:
            status, message, data = "error", str(exc), {}
            log.warning("%s failed: %s", name, exc)
        except MemoryError:
            status, message, data = "error", f"{name} ran out of memory: try a smaller file or a chunksize", {}
            log.error("%s ran out of memory", name)
        except Exception as exc:  # a bug: report it without killing the server
            status, message, data = "error", f"internal error in {name}: {type(exc).__name__}: {exc}", {}
            log.error("%s crashed:\n%s", name, traceback.format_exc())
        data = dict(data)
        if status == "ok":
            data.setdefault("seconds", round(time.perf_counter() - start, 3))
        envelope = Envelope(status=status, message=message, data=_jsonable(data))
        if run is not None:
            run.finish(status, message, versions(*self.packages))
            envelope.run_id = run.run_id
            envelope.log_path = str(run.log_path)
            envelope.artifacts = list(run.manifest.artifacts)
        return envelope

    def build(self) -> Any:
        """The low-level MCP ``Server`` with list/call handlers."""
        import anyio
        import mcp_types as types
        from mcp.server import Server

        tools = self.tools

        async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(
                        name=t.name,
                        description=t.description,
                        input_schema=_input_schema(t.args_model),
                        annotations=types.ToolAnnotations(**t.annotations),
                    )
                    for t in tools.values()
                ]
            )

        async def on_call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
            tool = tools.get(params.name)

            def progress(fraction: float, message: str | None) -> None:
                anyio.from_thread.run(ctx.session.report_progress, fraction, 1.0, message)

            async def run() -> Envelope:
                return await anyio.to_thread.run_sync(self.call, params.name, params.arguments, progress)

            if tool is not None and tool.exclusive:
                if self._lock is None:
                    self._lock = anyio.Lock()
                async with self._lock:
                    envelope = await run()
            else:
                envelope = await run()
            payload = envelope.model_dump(mode="json")
            return types.CallToolResult(
                content=[types.TextContent(text=json.dumps(payload, indent=1))],
                structured_content=payload,
                is_error=envelope.status == "error",
            )

        return Server(
            self.name,
            version=self.version,
            instructions=self.instructions or None,
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
        )

    def run_stdio(self) -> None:
        """Serve over stdio. Logs go to stderr; stdout carries only the protocol."""
        limit_threads()
        configure_logging()
        import anyio
        from mcp.server.stdio import stdio_server

        server = self.build()

        async def main() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        log.info("%s serving over stdio with %d tools", self.name, len(self.tools))
        anyio.run(main)


def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    from .atomic import to_jsonable

    return to_jsonable(data)


def health_payload(server: str, packages: list[str], model_names: list[str]) -> dict[str, Any]:
    import os
    import tempfile

    from .paths import workspace
    from .registry import ModelRegistry

    root = workspace()
    writable = True
    error = None
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".health-", delete=True):
            pass
    except OSError as exc:
        writable, error = False, str(exc)
    registry = ModelRegistry()
    models = {name: registry.latest_version(name) for name in model_names}
    return {
        "server": server,
        "versions": versions(*packages),
        "workspace": {"path": str(root), "writable": writable, "error": error},
        "allowed_dirs": [d for d in os.environ.get("BMS_ALLOWED_DIRS", "").split(os.pathsep) if d],
        "models": models,
        "models_present": all(v is not None for v in models.values()) if models else True,
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
    }


def configure_logging(level: str | None = None) -> None:
    import os

    root = logging.getLogger("bms")
    if any(getattr(h, "_bms_stderr", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._bms_stderr = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("BMS_LOG_LEVEL", "INFO"))
