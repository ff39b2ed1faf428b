"""The MCP layer's error paths: boundary checks on arguments, library failures named, warnings in the message."""

from __future__ import annotations

from pathlib import Path

import pytest
from bms_schema import InputError
from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer


@pytest.fixture
def server() -> ToolServer:
    server = ToolServer("test-server")

    class Args(ToolArgs):
        data_path: str = "x.csv"
        seed: int = 0
        fail: str = ""

    @server.tool(Args, title="t")
    def tool(args: Args, ctx: ToolContext) -> ToolOutput:
        if args.fail == "unicode":
            b"\xff\xfe".decode("utf-8")
        if args.fail == "arrow":
            import pyarrow as pa

            raise pa.ArrowInvalid("Parquet magic bytes not found in footer")
        if args.fail == "memory":
            raise MemoryError()
        if args.fail == "bug":
            raise KeyError("DeviceID")
        ctx.warn("12 of 100 rows were dropped because DeviceID is empty.")
        if args.fail == "input":
            raise InputError("bad")
        return ToolOutput(message="did it", data={"warnings": ["CellNumber is text in 3 rows."]})

    return server


def test_nul_bytes_and_seeds_are_refused_at_the_boundary(workspace: Path, server: ToolServer) -> None:
    env = server.call("tool", {"data_path": "data/a\x00b.csv"})
    assert env.status == "error" and "'data_path'" in env.message and "NUL byte" in env.message
    for seed in (-1, 2**32, 2**70):
        env = server.call("tool", {"seed": seed})
        assert env.status == "error" and "'seed'" in env.message and "between 0 and 4294967295" in env.message
    assert server.call("tool", {"seed": 2**32 - 1}).status == "ok"
    from bms_schema.mcp_server import _input_schema  # the declared input schema carries the bound too

    assert _input_schema(server.tools["tool"].args_model)["properties"]["seed"]["maximum"] == 2**32 - 1


def test_library_failures_on_inputs_are_named_bugs_stay_internal(workspace: Path, server: ToolServer) -> None:
    env = server.call("tool", {"fail": "unicode"})
    assert env.status == "error" and "not text in UTF-8 (byte 0xff at offset 0)" in env.message
    env = server.call("tool", {"fail": "arrow"})
    assert env.status == "error" and "not a readable CSV/Parquet table (Parquet magic bytes" in env.message
    env = server.call("tool", {"fail": "memory"})
    assert env.message == "tool ran out of memory: try a smaller input"  # no chunksize argument, none suggested
    env = server.call("tool", {"fail": "bug"})
    assert env.message.startswith("internal error in tool: KeyError")  # a real bug is still reported as one


def test_warnings_are_in_the_message_of_a_successful_call_only(workspace: Path, server: ToolServer) -> None:
    env = server.call("tool", {})
    assert env.status == "ok"
    assert env.message == (
        "did it. WARNING: 12 of 100 rows were dropped because DeviceID is empty. CellNumber is text in 3 rows."
    )
    assert env.data["warnings"] == [
        "12 of 100 rows were dropped because DeviceID is empty.",
        "CellNumber is text in 3 rows.",
    ]
    env = server.call("tool", {"fail": "input"})
    assert env.status == "error" and env.message == "bad"


def test_rows_the_data_core_drops_are_counted_into_the_message(workspace: Path, sample_csv: Path) -> None:
    """A tool that never looks at the quality report still tells the user what the loader dropped."""
    import numpy as np
    import pandas as pd
    from bms_schema.loader import load_canonical

    server = ToolServer("test-server")

    class Args(ToolArgs):
        pass

    @server.tool(Args, title="load")
    def load(args: Args, ctx: ToolContext) -> ToolOutput:
        raw = pd.read_csv(sample_csv)
        two = pd.concat([raw, raw.assign(DeviceID=raw["DeviceID"].astype(str) + "b")], ignore_index=True)
        frame = load_canonical(two.assign(DeviceID=np.nan), features=False, impute="none")
        return ToolOutput(message=f"loaded {len(frame)} rows")

    env = server.call("load", {})
    assert env.status == "ok"
    # 750 exact copies (the two devices became one) and 480 conflicting readings dropped: 270 rows left
    assert env.message == (
        "loaded 270 rows. WARNING: 480 of 1500 rows were dropped as conflicting readings of one "
        "cell at one time (same cell and timestamp, different values); 480 of them have no "
        "DeviceID, so cells of different devices collide: fill in DeviceID."
    )
