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

import inspect
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .errors import BMSError
from .models import Envelope
from .runtime import limit_threads, versions

log = logging.getLogger("bms.server")


#: Arguments that seed a random generator: 0 .. 2**32 - 1 everywhere (what NumPy and scikit-learn accept).
SEED_FIELDS = frozenset({"seed", "random_state"})
MAX_SEED = 2**32 - 1


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class ToolArgs(BaseModel):
    """Base of every tool's argument model: unknown arguments are refused.

    Checked for every tool at the boundary: no argument may hold a NUL byte (no path, name or
    column can), and ``seed`` / ``random_state`` lie in 0..2**32-1.
    """

    model_config = ConfigDict(extra="forbid")

    run_id: str | None = Field(
        default=None, description="Existing run id to write into (a pipeline passes one so all calls share a folder)"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _boundary_checks(cls, value: Any, info: ValidationInfo) -> Any:
        if _has_nul(value):
            raise ValueError("contains a NUL byte (\\x00), which no path, name or column can hold: remove it")
        if (
            info.field_name in SEED_FIELDS
            and isinstance(value, int)
            and not isinstance(value, bool)
            and not 0 <= value <= MAX_SEED
        ):
            raise ValueError(f"a random seed must be between 0 and {MAX_SEED} (2**32 - 1), got {value}")
        return value


class ToolData(BaseModel):
    """Base of a tool's typed ``data`` (pass a subclass as ``data_model=`` when registering).

    Declares the fields a caller can rely on; extra keys stay allowed, and every result carries
    ``seconds`` (the tool's own time). The model's JSON schema becomes the ``data`` part of the
    tool's ``outputSchema``.
    """

    model_config = ConfigDict(extra="allow")

    seconds: float | None = Field(default=None, description="seconds the tool itself took")


class WorkspaceStatus(BaseModel):
    path: str = Field(description="the workspace folder (BMS_WORKSPACE)")
    writable: bool
    error: str | None = Field(default=None, description="why the workspace is not writable")


class HealthData(ToolData):
    """``data`` of ``health_check``."""

    server: str
    status: Literal["healthy", "degraded"]
    versions: dict[str, str | None] = Field(description="installed versions of python and the server's libraries")
    workspace: WorkspaceStatus
    allowed_dirs: list[str] = Field(description="extra input folders (BMS_ALLOWED_DIRS)")
    models: dict[str, str | None] = Field(
        description="latest registered version of each model this server uses (null: none yet)"
    )
    models_present: bool
    threads: int = Field(description="compute threads per process (OMP_NUM_THREADS; 0 = not set)")
    leftovers_cleaned: dict[str, int] = Field(
        default_factory=dict,
        description="leftovers of stopped processes this check cleaned: steps closed as error, "
        "temp files, spill folders, model staging folders, unpublished versions",
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
    warnings: list[str] = field(default_factory=list)

    def warn(self, text: str | None) -> None:
        """A warning the user must read (rows dropped, inputs ignored): appended to a successful call's message."""
        if text:
            self.warnings.append(str(text))
            log.warning("%s", text)

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
    data_model: type[BaseModel] | None = None

    def output_schema(self) -> dict[str, Any]:
        return output_schema(self.data_model)


def input_failure(exc: BaseException) -> str | None:
    """A clear message for the ways third-party readers fail on a bad input file; None for anything else.

    The safety net behind the shared readers (``bms_schema.reader``), which already turn these
    into :class:`~bms_schema.errors.InputError`: undecodable text, a corrupt Arrow/Parquet file,
    a NUL byte reaching the file system.
    """
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"an input file is not text in UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
            "give a CSV saved as UTF-8, or a Parquet file"
        )
    module = type(exc).__module__ or ""
    if module.startswith("pyarrow") or type(exc).__name__.startswith("Arrow"):
        text = " ".join(str(exc).split())[:300]
        return f"an input file is not a readable CSV/Parquet table ({text}): check the file, or re-export it"
    if isinstance(exc, ValueError) and "null byte" in str(exc):
        return "a path contains a NUL byte (\\x00): remove it"
    return None


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
        data_model: type[BaseModel] | None = None,
    ) -> Callable[[Callable[[Any, ToolContext], ToolOutput]], Callable[[Any, ToolContext], ToolOutput]]:
        def decorator(func: Callable[[Any, ToolContext], ToolOutput]) -> Callable[[Any, ToolContext], ToolOutput]:
            tool_name = name or func.__name__
            self.tools[tool_name] = _Tool(
                name=tool_name,
                description=inspect.cleandoc(func.__doc__ or title),
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
                data_model=data_model,
            )
            return func

        return decorator

    def add_health_check(
        self, models: list[str] | None = None, extra: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """Register ``health_check``: versions, workspace writable, which models exist. No heavy imports."""
        self.model_names = list(models or [])
        server = self

        class HealthArgs(ToolArgs):
            pass

        def health_check(args: HealthArgs, ctx: ToolContext) -> ToolOutput:
            """Fast server check: library versions, workspace writable, registered models. Imports nothing heavy."""
            data = health_payload(server.name, server.packages, server.model_names)
            data["leftovers_cleaned"] = _clean_leftovers()
            if extra is not None:
                data.update(extra())
            status = "healthy" if data["workspace"]["writable"] else "degraded"
            data["status"] = status
            return ToolOutput(message=f"{server.name} is {status}", data=data)

        self.tool(
            HealthArgs,
            title="Health check",
            read_only=True,
            idempotent=True,
            writes_run=False,
            exclusive=False,
            data_model=HealthData,
        )(health_check)

    # -- execution ---------------------------------------------------------------------
    def call(
        self, name: str, arguments: dict[str, Any] | None, progress: Callable[[float, str | None], None] | None = None
    ) -> Envelope:
        """Validate, run and wrap one tool call (synchronous; used by the MCP handler and tests)."""
        from .runs import Run

        tool = self.tools.get(name)
        if tool is None:
            return Envelope(
                status="error", message=f"unknown tool '{name}': this server has {', '.join(sorted(self.tools))}"
            )
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
        from .registry import deferred_publication, discard, publish

        ctx = ToolContext(run=run, server=self, _progress=progress)
        start = time.perf_counter()
        from .notices import collecting, render

        pending: list[Any] = []
        tally: dict[str, dict[str, int]] = {}
        status: Literal["ok", "error"]
        try:
            with deferred_publication() as pending, collecting() as tally:  # publish only if the call succeeds
                output = tool.func(args, ctx)
            status, message, data = "ok", output.message, output.data
        except BMSError as exc:
            status, message, data = "error", str(exc), {}
            log.warning("%s failed: %s", name, exc)
        except MemoryError:
            status, message, data = (
                "error",
                (
                    f"{name} ran out of memory: try a smaller input"
                    + (" or a smaller chunksize" if "chunksize" in type(args).model_fields else "")
                ),
                {},
            )
            log.error("%s ran out of memory", name)
        except Exception as exc:
            known = input_failure(exc)
            if known is not None:  # a library refusing a bad input file: say so, it is not a bug
                status, message, data = "error", f"{name}: {known}", {}
                log.warning("%s failed on its input: %s: %s", name, type(exc).__name__, exc)
            else:  # a bug: report it without killing the server
                status, message, data = "error", f"internal error in {name}: {type(exc).__name__}: {exc}", {}
                log.error("%s crashed:\n%s", name, traceback.format_exc())
        data = dict(data)
        explicit = [*ctx.warnings, *(str(w) for w in data.get("warnings") or [])] if status == "ok" else []
        if status == "ok" and not any("conflicting readings" in w for w in explicit):
            explicit += render(tally)  # what the data core dropped, unless the tool already explained it
        if status == "ok" and explicit:  # rows lost, inputs ignored: in the message
            warnings = list(dict.fromkeys(explicit))
            data["warnings"] = warnings
            message = f"{message}. WARNING: {' '.join(warnings)}"
        if status == "ok":
            data.setdefault("seconds", round(time.perf_counter() - start, 3))
            if tool.data_model is not None:
                try:
                    tool.data_model.model_validate(_jsonable(data))
                except ValidationError as exc:  # a bug in the tool: its result breaks its own schema
                    status, data = "error", {}
                    message = f"{name} returned data that does not match its declared output schema: {exc}"
                    log.error(message)
        try:  # the last act of a successful call: its registered versions become latest / get their alias
            if status == "ok":
                publish(pending)
        except (BMSError, OSError) as exc:
            status, message, data = "error", f"{name} could not publish its registered model: {exc}", {}
            log.error(message)
        finally:
            discard(pending)  # what a failed call registered (or failed to publish) is removed
        envelope = Envelope(status=status, message=message, data=_jsonable(data))
        if run is not None:
            run.finish(status, message, versions(*self.packages))
            envelope.run_id = run.run_id
            envelope.log_path = str(run.log_path)
            envelope.artifacts = list(run.manifest.artifacts)
        return envelope

    def package_version(self) -> str:
        """The installed version of this server's distribution (its ``name``), else ``version``."""
        from importlib import metadata

        try:
            return metadata.version(self.name)
        except metadata.PackageNotFoundError:
            return self.version

    def build(self) -> Any:
        """The low-level MCP ``Server``: tools, resources, resource templates and prompts."""
        import anyio
        import mcp_types as types
        from mcp.server import Server
        from mcp.shared.exceptions import MCPError

        from . import mcp_content as content

        tools = self.tools

        async def on_list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
            return types.ListToolsResult(
                tools=[
                    types.Tool(
                        name=t.name,
                        title=t.annotations.get("title"),
                        description=t.description,
                        input_schema=_input_schema(t.args_model),
                        output_schema=t.output_schema(),
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
            blocks: list[Any] = [types.TextContent(text=json.dumps(payload, indent=1))]
            if envelope.status == "ok":
                try:
                    blocks += await anyio.to_thread.run_sync(content.plot_content, payload.get("artifacts") or [])
                except Exception:  # pictures are a convenience: never fail a finished call over them
                    log.warning("could not attach the plots of %s", params.name, exc_info=True)
            return types.CallToolResult(
                content=blocks,
                structured_content=payload,
                is_error=envelope.status == "error",
            )

        async def on_list_resources(ctx: Any, params: Any) -> types.ListResourcesResult:
            found = await anyio.to_thread.run_sync(content.list_resources, self.model_names)
            return types.ListResourcesResult(
                resources=[
                    types.Resource(
                        uri=r.uri, name=r.name, title=r.title, description=r.description, mime_type=r.mime_type
                    )
                    for r in found
                ]
            )

        async def on_list_resource_templates(ctx: Any, params: Any) -> types.ListResourceTemplatesResult:
            return types.ListResourceTemplatesResult(
                resource_templates=[
                    types.ResourceTemplate(
                        uri_template="bms://models/{name}/card",
                        name="model-card",
                        title="Model card",
                        mime_type="text/markdown",
                        description="metrics, features, training data and versions of a "
                        "registered model (latest version)",
                    ),
                    types.ResourceTemplate(
                        uri_template="bms://runs/{run_id}/{step}/{file}",
                        name="run-file",
                        title="File of a run",
                        description="a file a tool wrote (plots, tables, reports): the URIs of "
                        "a result's resource links",
                    ),
                ]
            )

        async def on_read_resource(ctx: Any, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
            uri = str(params.uri)
            try:
                body, mime = await anyio.to_thread.run_sync(content.read_resource, uri)
            except content.ResourceNotFound as exc:
                raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
            if isinstance(body, bytes):
                import base64

                return types.ReadResourceResult(
                    contents=[
                        types.BlobResourceContents(uri=uri, mime_type=mime, blob=base64.b64encode(body).decode("ascii"))
                    ]
                )
            return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime, text=body)])

        async def on_list_prompts(ctx: Any, params: Any) -> types.ListPromptsResult:
            return types.ListPromptsResult(
                prompts=[
                    types.Prompt(
                        name=p.name,
                        title=p.title,
                        description=p.description,
                        arguments=[types.PromptArgument(name=n, description=d, required=r) for n, d, r in p.arguments],
                    )
                    for p in content.PROMPTS
                ]
            )

        async def on_get_prompt(ctx: Any, params: types.GetPromptRequestParams) -> types.GetPromptResult:
            try:
                prompt = content.get_prompt(params.name)
                text = prompt.render(params.arguments)
            except (content.ResourceNotFound, ValueError) as exc:
                raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
            return types.GetPromptResult(
                description=prompt.description,
                messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
            )

        return Server(
            self.name,
            version=self.package_version(),
            instructions=self.instructions or None,
            on_list_tools=on_list_tools,
            on_call_tool=on_call_tool,
            on_list_resources=on_list_resources,
            on_list_resource_templates=on_list_resource_templates,
            on_read_resource=on_read_resource,
            on_list_prompts=on_list_prompts,
            on_get_prompt=on_get_prompt,
        )

    def main(self, argv: list[str] | None = None) -> None:
        """The server's command line: ``--help``, ``--version``, ``--workspace``, ``--transport``, ..."""
        from .mcp_cli import main

        main(self, argv)

    def run_stdio(self, log_level: str | None = None) -> None:
        """Serve over stdio. Logs go to stderr; stdout carries only the protocol."""
        limit_threads()
        configure_logging(log_level)
        import anyio
        from mcp.server.stdio import stdio_server

        server = self.build()
        _clean_leftovers_in_background()

        async def main() -> None:
            async with stdio_server() as (read_stream, write_stream):
                await server.run(read_stream, write_stream, server.create_initialization_options())

        log.info("%s serving over stdio with %d tools", self.name, len(self.tools))
        anyio.run(main)

    def run_http(self, host: str, port: int, token: str, log_level: str | None = None) -> None:
        """Serve streamable HTTP at ``http://host:port/mcp``; requests need ``Authorization: Bearer <token>``."""
        limit_threads()
        configure_logging(log_level)
        import uvicorn

        from .mcp_cli import MCP_PATH, http_app

        app = http_app(self, token, host=host)
        _clean_leftovers_in_background()
        log.info(
            "%s serving streamable HTTP at http://%s:%d%s with %d tools (bearer token required)",
            self.name,
            host,
            port,
            MCP_PATH,
            len(self.tools),
        )
        uvicorn.run(app, host=host, port=port, log_level=(log_level or "warning").lower(), access_log=False)


def output_schema(data_model: type[BaseModel] | None = None) -> dict[str, Any]:
    """JSON schema of the envelope a tool returns, with ``data`` typed by ``data_model``.

    An error envelope carries an empty ``data``, so ``data`` is "the typed object, or {}".
    """
    schema = Envelope.model_json_schema()
    schema.pop("title", None)
    defs = schema.setdefault("$defs", {})
    data_schema: dict[str, Any] = {"type": "object", "description": "small results of the tool (see its description)"}
    if data_model is not None:
        typed = data_model.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in typed.pop("$defs", {}).items():
            defs[key] = value
        typed.pop("title", None)
        data_schema = {
            "anyOf": [typed, {"type": "object", "maxProperties": 0, "description": "empty when status is 'error'"}]
        }
    schema["properties"]["data"] = data_schema
    if not defs:
        schema.pop("$defs")
    return schema


def _input_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    schema.pop("title", None)
    for name in SEED_FIELDS & set(schema.get("properties", {})):  # the bound ToolArgs enforces, declared
        schema["properties"][name].update(minimum=0, maximum=MAX_SEED)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    from .atomic import to_jsonable

    return to_jsonable(data)


def _clean_leftovers() -> dict[str, int]:
    """Close steps and remove leftovers of stopped processes (see :mod:`bms_schema.leftovers`); counts."""
    from .leftovers import clean_workspace

    try:
        report = clean_workspace()
    except Exception:  # cleaning is housekeeping: never fail a health check or a start over it
        log.warning("could not clean leftovers of stopped processes", exc_info=True)
        return {}
    return {k: len(v) for k, v in report.items() if v}


def _clean_leftovers_in_background() -> None:
    """At server start, without delaying ``initialize``."""
    import threading

    threading.Thread(target=_clean_leftovers, name="bms-clean-leftovers", daemon=True).start()


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
    models = {name: registry.resolve(name, "champion") for name in model_names}  # what predict tools use
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
