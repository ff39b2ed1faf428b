"""Killed calls: versions are published only by a finished call; leftovers of dead processes are cleaned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bms_schema import InputError, ModelError, ModelRegistry
from bms_schema.leftovers import clean_workspace, owner_tag, tag_alive
from bms_schema.mcp_server import ToolArgs, ToolContext, ToolOutput, ToolServer
from bms_schema.registry import deferred_publication, discard, publish
from bms_schema.runs import Run


@pytest.fixture(scope="module")
def dead_tag() -> str:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return f"pid{int(proc.stdout)}t1"


def test_tags_tell_live_from_dead(dead_tag: str) -> None:
    assert tag_alive(owner_tag()) is True
    assert tag_alive(dead_tag) is False
    assert tag_alive("no-tag-here") is None
    pid = owner_tag().split("t")[0][3:]
    assert tag_alive(f"pid{pid}t999999999999") is False  # same pid, other start time: a recycled pid
    assert tag_alive(f"{dead_tag}h0badc0de") is None  # another host's pid: not judged here (age decides)


def _register(registry: ModelRegistry, text: str = "{}") -> str:
    with registry.register("demo") as staging:
        (staging.dir / "m.json").write_text(text)
    assert staging.version is not None
    return staging.version


def test_deferred_version_is_invisible_until_published(workspace: Path) -> None:
    registry = ModelRegistry()
    first = _register(registry)
    with deferred_publication() as pending:
        second = _register(registry)
        assert registry.resolve("demo", "latest") == second  # the registering call sees its own version
        assert registry.load("demo", "latest").version == second
    assert second == "v0002" and registry.latest_version("demo") == first and registry.versions("demo") == [first]
    with pytest.raises(ModelError, match="is not published: the tool call that registered it has not finished"):
        registry.load("demo", second)
    publish(pending)
    assert registry.latest_version("demo") == second and registry.versions("demo") == [first, second]
    assert not list((workspace / "models" / "demo").glob(".pending-*"))


def test_discarded_version_leaves_nothing(workspace: Path) -> None:
    registry = ModelRegistry()
    with deferred_publication() as pending:
        _register(registry)
    discard(pending)
    root = workspace / "models" / "demo"
    assert registry.versions("demo") == [] and not (root / "v0001").exists() and not (root / "latest").exists()
    assert _register(registry) == "v0001"


def test_failed_tool_call_registers_nothing_and_leaves_no_file(workspace: Path) -> None:
    server = ToolServer("test-server")

    class Args(ToolArgs):
        fail: bool = False

    @server.tool(Args, title="train")
    def train(args: Args, ctx: ToolContext) -> ToolOutput:
        _register(ModelRegistry())
        ctx.run.path("half.html").write_text("x" * 1000)  # written, never listed as an artifact
        ctx.run.path("sub/part.bin").write_bytes(b"1")
        if args.fail:
            raise InputError("bad input")
        return ToolOutput(message="ok")

    bad = server.call("train", {"fail": True})
    assert bad.status == "error" and bad.message == "bad input"
    step = Path(bad.log_path).parent
    assert sorted(p.name for p in step.iterdir()) == ["manifest.json", "tool.log"]
    assert ModelRegistry().versions("demo") == [] and not (workspace / "models" / "demo" / "v0001").exists()
    good = server.call("train", {})
    assert good.status == "ok" and ModelRegistry().latest_version("demo") == "v0001"


def test_clean_workspace_removes_only_dead_owners_leftovers(workspace: Path, dead_tag: str) -> None:
    registry = ModelRegistry()
    _register(registry)
    root = workspace / "models" / "demo"
    # a killed registration: a pending version with its marker, a staging folder, a temp link
    (root / "v0002").mkdir()
    (root / "v0002" / "m.json").write_text("{}")
    (root / f".pending-v0002-{dead_tag}").write_text("{}")
    (root / f".staging-{dead_tag}-abc").mkdir()
    os.symlink("v0001", root / f".latest-{dead_tag}-1234")
    live_staging = root / f".staging-{owner_tag()}-def"
    live_staging.mkdir()
    # a killed step with its spill folder and a temp file; a live step
    dead = Run(tool="train", server="s")
    live = Run(tool="train", server="s", run_id=dead.run_id)
    index_path = dead.run_dir / "manifest.json"
    index = json.loads(index_path.read_text())
    index["steps"][0]["owner"] = dead_tag
    index_path.write_text(json.dumps(index))
    (dead.dir / f".bms-spill-{dead_tag}-x").mkdir()
    (dead.dir / f".out.csv.{dead_tag}.abc.tmp").write_text("partial")
    (dead.dir / "half.csv").write_text("partial")
    (live.dir / f".out.csv.{owner_tag()}.abc.tmp").write_text("being written")
    (workspace / "data" / f".x.csv.{dead_tag}.q.tmp").write_text("partial")
    (workspace / "data" / f".bms-spill-{dead_tag}-y").mkdir()
    young_untagged = workspace / "data" / ".x.csv.zzz.tmp"
    young_untagged.write_text("someone's")

    report = clean_workspace()
    assert report["steps_closed"] == [f"{dead.run_id}/{dead.step}"]
    assert report["pending_versions"] == ["demo/v0002"]
    # the dead step's own spill folder and temp file went with its step; those in data/ are counted here
    assert len(report["spill_folders"]) == 1 and len(report["tmp_files"]) == 1 and len(report["staging_folders"]) == 1
    assert not any(p.name.startswith(".bms-spill-") for p in (workspace / "data").iterdir())
    assert not (root / "v0002").exists() and registry.latest_version("demo") == "v0001"
    assert live_staging.exists() and young_untagged.exists()
    assert (live.dir / f".out.csv.{owner_tag()}.abc.tmp").exists()
    assert sorted(p.name for p in dead.dir.iterdir()) == ["manifest.json", "tool.log"]
    steps = {s["step"]: s["status"] for s in json.loads(index_path.read_text())["steps"]}
    assert steps == {dead.step: "error", live.step: "running"}
    message = json.loads((dead.dir / "manifest.json").read_text())["message"]
    assert "stopped during the call" in message
    assert not any(p.name.startswith(".latest-") for p in root.iterdir())
    assert clean_workspace() == {k: [] for k in report}  # idempotent
    live.finish("ok", "done")
