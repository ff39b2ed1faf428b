"""The shared MCP layer: validation, envelopes, errors, partial-output cleanup (in process)."""

from __future__ import annotations

from pathlib import Path

from bms_schema import InputError
from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from pydantic import Field


class EchoArgs(ToolArgs):
    value: int = Field(ge=0)
    fail: bool = False


def make_server() -> ToolServer:
    server = ToolServer("test-server", packages=["pandas"])
    server.add_health_check(models=["nothing"])

    @server.tool(EchoArgs, title="Echo")
    def echo(args: EchoArgs, ctx: ToolContext) -> ToolOutput:
        """Write a file, then maybe fail."""
        path = ctx.run.path("out.txt")
        path.write_text(str(args.value))
        ctx.run.add_artifact(path, "data", "echo")
        if args.fail:
            raise InputError("value rejected: try another")
        if args.value == 13:
            raise ZeroDivisionError("unlucky")
        return ToolOutput(message=f"echo {args.value}", data={"value": args.value})

    return server


def test_ok_envelope(workspace: Path) -> None:
    env = make_server().call("echo", {"value": 3})
    assert env.status == "ok" and env.data["value"] == 3
    assert env.run_id and Path(env.log_path).exists()
    assert Path(env.artifacts[0].path).read_text() == "3"


def test_validation_errors_are_readable(workspace: Path) -> None:
    env = make_server().call("echo", {"value": -1, "extra": 1})
    assert env.status == "error"
    assert "'value': Input should be greater than or equal to 0" in env.message
    assert "'extra': unknown argument" in env.message
    assert env.run_id is None


def test_user_error_removes_partial_output(workspace: Path) -> None:
    env = make_server().call("echo", {"value": 1, "fail": True})
    assert env.status == "error" and env.message == "value rejected: try another"
    assert env.artifacts == []
    assert not list((workspace / "runs" / env.run_id).glob("*/out.txt"))


def test_bug_reported_not_raised(workspace: Path) -> None:
    env = make_server().call("echo", {"value": 13})
    assert env.status == "error"
    assert env.message == "internal error in echo: ZeroDivisionError: unlucky"
    assert "Traceback" in Path(env.log_path).read_text()


def test_unknown_tool_and_health(workspace: Path) -> None:
    server = make_server()
    assert server.call("nope", {}).message == "unknown tool 'nope': this server has echo, health_check"
    health = server.call("health_check", {})
    assert health.status == "ok"
    assert health.data["models"] == {"nothing": None} and health.data["models_present"] is False
    assert health.data["versions"]["pandas"]
