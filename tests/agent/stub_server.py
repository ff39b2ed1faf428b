"""A small MCP server for driver tests: real protocol and run folders, controllable failures.

Tools: ``write_value`` (writes a CSV artifact into the run step, reports progress), ``die``
(the process exits mid-call), ``hang`` (never answers in time). ``STUB_MODE=die`` makes
``write_value`` itself exit mid-call, to stand in for a crashing server.
"""

from __future__ import annotations

import os
import time

from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field

server = ToolServer("stub-mcp", packages=["mcp"])
server.add_health_check()


class ValueArgs(ToolArgs):
    value: int = Field(default=1, description="a number to write")


class NoArgs(ToolArgs):
    pass


@server.tool(ValueArgs, title="Write a value")
def write_value(args: ValueArgs, ctx: ToolContext) -> ToolOutput:
    """Write the value into a CSV artifact."""
    if os.environ.get("STUB_MODE") == "die":
        time.sleep(0.2)
        os._exit(7)
    for step in range(3):
        ctx.progress(step / 3, f"part {step + 1} of 3")
    path = ctx.run.path("value.csv")
    path.write_text(f"Value\n{args.value}\n")
    ctx.run.add_artifact(path, "table", "the value")
    return ToolOutput(message=f"wrote {args.value}", data={"value": args.value, "doubled": 2 * args.value})


class PauseArgs(ToolArgs):
    seconds: float = Field(default=1.0, ge=0, le=30, description="how long to work")


@server.tool(PauseArgs, title="Pause", writes_run=False)
def pause(args: PauseArgs, ctx: ToolContext) -> ToolOutput:
    """Work for a while and say when (to test that independent stages overlap)."""
    started = time.time()
    time.sleep(args.seconds)
    return ToolOutput(message="paused", data={"started": started, "ended": time.time()})


@server.tool(NoArgs, title="Die mid-call", writes_run=False)
def die(args: NoArgs, ctx: ToolContext) -> ToolOutput:
    """Exit the process during the call."""
    time.sleep(0.2)
    os._exit(7)


@server.tool(NoArgs, title="Hang", writes_run=False)
def hang(args: NoArgs, ctx: ToolContext) -> ToolOutput:
    """Take far longer than any test timeout."""
    time.sleep(60)
    return ToolOutput(message="late")


if __name__ == "__main__":
    server.run_stdio()
