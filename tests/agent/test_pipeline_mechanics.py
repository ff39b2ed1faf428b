"""The pipeline runner against stub MCP servers: crash and hang detection, resume, progress, report."""

from __future__ import annotations

import json
import time

import anyio
from bms_agent.pipeline import PipelineRunner, prepare_state
from bms_agent.report import timing_summary, write_report
from bms_agent.stages import Call, Stage
from bms_agent.state import PipelineOptions
from bms_agent.ui import SilentReporter

STAGES = (
    Stage("one", "Stage one", ("stub",), lambda s: [Call("stub", "write_value", {"value": 3})]),
    Stage("two", "Stage two", ("other",), lambda s: [Call("other", "write_value", {"value": 5})], after=("one",)),
)


def run(state, workspace, specs, stages=STAGES):
    reporter = SilentReporter()
    runner = PipelineRunner(state, workspace, specs=specs, reporter=reporter, stages=stages)
    return anyio.run(runner.run), reporter


def steps(state):
    return json.loads((state.run_dir / "manifest.json").read_text())["steps"]


def test_crash_mid_call_names_stage_keeps_work_and_resume_finishes(workspace, stub_spec):
    state = prepare_state(PipelineOptions(timeout=30), workspace)
    specs = {"stub": stub_spec("stub"), "other": stub_spec("other", STUB_MODE="die")}
    result, reporter = run(state, workspace, specs)

    assert result.failed_stage == "two" and result.exit_code == 1
    assert "stage 'two' failed: other server, tool write_value" in result.error
    assert "exited during the call" in result.error
    assert state.stages["one"].status == "ok" and state.stages["two"].status == "error"
    first_output = state.stages["one"].calls[0].envelope["artifacts"][0]["path"]
    assert open(first_output).read() == "Value\n3\n"  # finished work is kept
    assert ("progress", "one", 0, 1 / 3, "part 2 of 3") in reporter.events  # server progress forwarded
    md, html = write_report(state, workspace, failed=result.failed_stage)
    assert "stopped at stage 'two'" in md.read_text() and "exited during the call" in html.read_text()

    resumed = prepare_state(PipelineOptions(timeout=30), workspace, resume=state.run_id)
    assert resumed.attempts == 2 and resumed.ok("one") and not resumed.ok("two")
    specs["other"] = stub_spec("other")
    result2, reporter2 = run(resumed, workspace, specs)
    assert result2.ok and result2.exit_code == 0
    assert resumed.stages["two"].calls[0].envelope["data"] == {
        "value": 5,
        "doubled": 10,
        "seconds": resumed.stages["two"].calls[0].envelope["data"]["seconds"],
    }
    recorded = steps(resumed)
    # stage one ran once; the driver closed the crashed call's step as 'error'; the resumed call finished
    assert [(s["step"], s["status"]) for s in recorded] == [
        ("01-write_value", "ok"),
        ("02-write_value", "error"),
        ("03-write_value", "ok"),
    ]
    assert ("finish", "one", "ok", 0.0, "done in an earlier attempt") in reporter2.events
    assert all(c.arguments["run_id"] == state.run_id for r in resumed.stages.values() for c in r.calls)


def test_hung_server_is_stopped_by_the_timeout(workspace, stub_spec):
    stages = (Stage("slow", "Slow", ("stub",), lambda s: [Call("stub", "hang", {})]),)
    state = prepare_state(PipelineOptions(timeout=1.5), workspace)
    start = time.perf_counter()
    result, _ = run(state, workspace, {"stub": stub_spec()}, stages)
    elapsed = time.perf_counter() - start
    assert result.failed_stage == "slow"
    assert "stub server, tool hang: no answer within 1.5 s" in result.error
    assert elapsed < 15, f"a hung server held the pipeline for {elapsed:.1f} s"


def test_missing_server_fails_its_stage_with_a_clear_message(workspace, stub_spec):
    from bms_agent.servers import ServerSpec

    broken = ServerSpec("stub", stub_spec().command, ("/nonexistent/server.py",), stub_spec().cwd)
    state = prepare_state(PipelineOptions(timeout=10), workspace)
    result, _ = run(state, workspace, {"stub": broken, "other": stub_spec("other")})
    assert result.failed_stage == "one"
    assert "stub server, tool initialize: the server could not be started" in result.error
    assert "No such file or directory" in result.error  # the server's own stderr is quoted


def test_server_that_never_answers_initialize_is_cut_off(workspace, stub_spec):
    from bms_agent.servers import ServerSpec

    mute = ServerSpec("stub", stub_spec().command, ("-c", "import time; time.sleep(60)"), stub_spec().cwd)
    state = prepare_state(PipelineOptions(timeout=10, start_timeout=1.5), workspace)
    start = time.perf_counter()
    result, _ = run(state, workspace, {"stub": mute, "other": stub_spec("other")})
    elapsed = time.perf_counter() - start
    assert result.failed_stage == "one"
    assert "stub server, tool initialize: the server did not answer initialize within 1.5 s" in result.error
    assert elapsed < 15, f"a server stuck before initialize held the pipeline for {elapsed:.1f} s"


def test_skip_and_needs(workspace, stub_spec):
    stages = STAGES + (
        Stage("three", "Three", ("stub",), lambda s: [Call("stub", "write_value", {"value": 1})], needs=("two",)),
    )
    state = prepare_state(PipelineOptions(timeout=30, skip=["two"]), workspace)
    result, _ = run(state, workspace, {"stub": stub_spec(), "other": stub_spec("other")}, stages)
    assert result.ok
    assert state.stages["two"].status == "skipped" and state.stages["two"].reason == "--skip"
    assert state.stages["three"].status == "skipped" and "needs two" in state.stages["three"].reason
    timing = timing_summary(state)
    assert 0 < timing["tool_seconds"] < timing["wall_seconds"]
    assert 0 < timing["outside_tools_share"] < 1
    assert timing["server_start_seconds"] > 0


def test_unknown_tool_fails_with_the_servers_message(workspace, stub_spec):
    stages = (Stage("x", "X", ("stub",), lambda s: [Call("stub", "not_there", {})]),)
    state = prepare_state(PipelineOptions(timeout=10), workspace)
    result, _ = run(state, workspace, {"stub": stub_spec()}, stages)
    assert result.failed_stage == "x"
    assert "unknown tool 'not_there': this server has die, hang, health_check, pause, write_value" in result.error


def test_independent_stages_overlap_and_dependent_ones_wait(workspace, stub_spec):
    pause = lambda server: lambda s: [Call(server, "pause", {"seconds": 1.5})]  # noqa: E731
    stages = (
        Stage("a", "A", ("stub",), pause("stub")),
        Stage("b", "B", ("other",), pause("other")),  # independent of a: overlaps it
        Stage("c", "C", ("other",), pause("other"), after=("a",)),  # waits for a (and for b: same server)
    )
    state = prepare_state(PipelineOptions(timeout=30, parallel=2), workspace)
    result, _ = run(state, workspace, {"stub": stub_spec(), "other": stub_spec("other")}, stages)
    assert result.ok
    span = {n: state.stages[n].calls[0].envelope["data"] for n in "abc"}
    assert span["b"]["started"] < span["a"]["ended"] and span["a"]["started"] < span["b"]["ended"]
    assert span["c"]["started"] >= max(span["a"]["ended"], span["b"]["ended"])

    state1 = prepare_state(PipelineOptions(timeout=30, parallel=1), workspace)
    run(state1, workspace, {"stub": stub_spec(), "other": stub_spec("other")}, stages)
    one = {n: state1.stages[n].calls[0].envelope["data"] for n in "abc"}
    assert one["b"]["started"] >= one["a"]["ended"]  # --parallel 1: one stage at a time


def test_a_skipped_stage_still_waits_for_what_it_comes_after(workspace, stub_spec):
    # a -> b (skipped) -> c on another server: c must wait for a although b, which it comes after, is skipped
    # (``--skip anomaly_train`` once started ``anomaly`` before ``preprocess`` had finished)
    pause = lambda server: lambda s: [Call(server, "pause", {"seconds": 1.5})]  # noqa: E731
    stages = (
        Stage("a", "A", ("stub",), pause("stub")),
        Stage("b", "B", ("stub",), pause("stub"), after=("a",)),
        Stage("c", "C", ("other",), pause("other"), after=("b",)),
    )
    state = prepare_state(PipelineOptions(timeout=30, parallel=2, skip=["b"]), workspace)
    result, _ = run(state, workspace, {"stub": stub_spec(), "other": stub_spec("other")}, stages)
    assert result.ok, result.error
    assert state.stages["b"].status == "skipped" and not state.stages["b"].calls
    span = {n: state.stages[n].calls[0].envelope["data"] for n in "ac"}
    assert span["c"]["started"] >= span["a"]["ended"]
