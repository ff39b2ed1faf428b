"""Run the stages over MCP: one run id, one run folder, resumable, every call bounded by a timeout."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .connections import ServerPool, ToolCallError
from .servers import ServerSpec, default_specs
from .stages import STAGES, Stage, StageInputError
from .state import CallRecord, PipelineOptions, PipelineState, StageRecord
from .ui import Reporter, SilentReporter

log = logging.getLogger("bms.agent")


class PipelineError(Exception):
    """The pipeline could not start (bad options, unknown run to resume)."""


@dataclass
class PipelineResult:
    state: PipelineState
    failed_stage: str | None = None
    error: str | None = None
    report_md: Path | None = None
    report_html: Path | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.failed_stage is None

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def server_env(options: PipelineOptions, workspace: Path) -> dict[str, str]:
    """Environment for the servers: the same workspace, and the user's data folder allowed."""
    env = {"BMS_WORKSPACE": str(workspace), "MPLBACKEND": "Agg"}
    allowed = [d for d in os.environ.get("BMS_ALLOWED_DIRS", "").split(os.pathsep) if d]
    if options.data:
        folder = str(Path(options.data).expanduser().resolve().parent)
        if folder not in allowed:
            allowed.append(folder)
    if allowed:
        env["BMS_ALLOWED_DIRS"] = os.pathsep.join(allowed)
    return env


def prepare_state(options: PipelineOptions, workspace: Path, resume: str | None = None) -> PipelineState:
    """A fresh state with a new run id, or the saved state of the run to resume."""
    from bms_schema import BMSError
    from bms_schema.runs import check_run_id, new_run_id

    runs = workspace / "runs"
    if resume:
        try:
            check_run_id(resume)
        except BMSError as exc:
            raise PipelineError(str(exc)) from None
        run_dir = runs / resume
        if not (run_dir / "pipeline" / "state.json").exists():
            known = sorted(p.name for p in runs.glob("*/pipeline/state.json")) if runs.exists() else []
            raise PipelineError(
                f"no pipeline run '{resume}' in {runs} to resume"
                + (f"; pipeline runs there: {', '.join(p.split('/')[0] for p in known[-5:])}" if known else "")
            )
        state = PipelineState.load(run_dir)
        state.options.skip = options.skip or state.options.skip
        state.options.timeout = options.timeout
        state.options.start_timeout = options.start_timeout
        state.options.parallel = options.parallel
        return state
    if options.data:
        if not Path(options.data).expanduser().is_file():
            raise PipelineError(f"--data {options.data}: no such file")
        options.data = str(Path(options.data).expanduser().resolve())  # a resumed run must find it from anywhere
    run_id = new_run_id()
    state = PipelineState(run_id=run_id, run_dir=runs / run_id, options=options)
    state.dir.mkdir(parents=True, exist_ok=True)
    state.save()
    return state


class PipelineRunner:
    """Drive the stages against the servers for one run."""

    def __init__(
        self,
        state: PipelineState,
        workspace: Path,
        specs: dict[str, ServerSpec] | None = None,
        reporter: Reporter | None = None,
        stages: tuple[Stage, ...] = STAGES,
    ):
        self.state = state
        self.workspace = workspace
        self.specs = specs or default_specs()
        self.reporter = reporter or SilentReporter()
        self.stages = stages

    def plan(self) -> list[Stage]:
        """Stages still to run; the others are marked skipped (with why) or kept from the resumed run."""
        todo: list[Stage] = []
        state, skipped = self.state, set(self.state.options.skip)
        ordered = {s.name: state.stages.get(s.name, StageRecord(name=s.name)) for s in self.stages}
        state.stages = {**ordered, **{k: v for k, v in state.stages.items() if k not in ordered}}
        for stage in self.stages:
            if state.ok(stage.name) and not stage.every_attempt:
                continue
            reason = None
            if stage.name in skipped:
                reason = "--skip"
            elif stage.skip_when is not None:
                reason = stage.skip_when(state)
            if reason is None:
                missing = [n for n in stage.needs if state.stages.get(n, StageRecord(n)).status == "skipped"]
                if missing:
                    reason = f"needs {', '.join(missing)}, which was skipped"
            if reason is not None:
                state.stages[stage.name] = StageRecord(name=stage.name, status="skipped", reason=reason)
                continue
            todo.append(stage)
        return todo

    async def run(self) -> PipelineResult:
        start = time.perf_counter()
        todo = self.plan()
        result = PipelineResult(state=self.state)
        needed = [name for name in self.specs if any(name in stage.servers_in(self.state) for stage in todo)]
        env = server_env(self.state.options, self.workspace)
        pool = ServerPool(
            self.specs, env=env, log_dir=self.state.dir / "servers", start_timeout=self.state.options.start_timeout
        )
        async with pool:
            pool.start(*needed)  # every needed server starts now, concurrently
            for stage in self.stages:
                record = self.state.stages.get(stage.name)
                if stage not in todo and record is not None and record.status in ("ok", "skipped"):
                    note = "done in an earlier attempt" if record.status == "ok" else (record.reason or "")
                    self.reporter.stage_finished(stage.name, record.status, 0.0, note)
            failures = await self._schedule(todo, pool)
            if failures:
                result.failed_stage, result.error = failures[0]
            for name in needed:
                if pool.start_seconds(name):
                    self.state.server_start_seconds[name] = round(pool.start_seconds(name), 3)
        result.seconds = time.perf_counter() - start
        self.state.wall_seconds += result.seconds
        self.state.save()
        return result

    async def _schedule(self, todo: list[Stage], pool: ServerPool) -> list[tuple[str, str]]:
        """Run stages as soon as the stages they come ``after`` are done, ``parallel`` at a time.

        Independent stages on different servers overlap (each server is its own process, one
        compute thread each). After a failure nothing new starts; running stages finish and are kept.
        """
        pending = list(todo)
        running: set[str] = set()
        failures: list[tuple[str, str]] = []
        limit = max(1, int(self.state.options.parallel))
        send, receive = anyio.create_memory_object_stream[tuple[str, str | None]](len(todo) + 1)

        by_name = {s.name: s for s in self.stages}

        def finished(name: str) -> bool:
            """Done, or skipped with everything it comes after done: a skipped stage stands in the chain, so
            ``--skip anomaly_train`` still makes ``anomaly`` wait for ``preprocess``."""
            record = self.state.stages.get(name)
            if record is None or record.status == "ok":
                return True
            if record.status != "skipped":
                return False
            stage = by_name.get(name)
            return stage is None or all(finished(dep) for dep in stage.after)

        async def run_one(stage: Stage) -> None:
            error = await self._run_stage(stage, pool)
            self.state.save()
            await send.send((stage.name, error))

        async with anyio.create_task_group() as tg:
            while pending or running:
                if not failures:
                    for stage in list(pending):
                        if len(running) >= limit:
                            break
                        if all(finished(dep) for dep in stage.after) and not self._busy(stage, running):
                            pending.remove(stage)
                            running.add(stage.name)
                            tg.start_soon(run_one, stage)
                if not running:
                    break  # what is left waits on a stage that failed
                name, error = await receive.receive()
                running.discard(name)
                if error is not None:
                    failures.append((name, error))
        return failures

    def _busy(self, stage: Stage, running: set[str]) -> bool:
        """A stage waits while another stage on one of its servers runs (servers run one tool at a time)."""
        by_name = {s.name: s for s in self.stages}
        return any(set(stage.servers) & set(by_name[r].servers) for r in running)

    async def _run_stage(self, stage: Stage, pool: ServerPool) -> str | None:
        state = self.state
        record = StageRecord(name=stage.name, status="running")
        state.stages[stage.name] = record
        started = time.perf_counter()
        try:
            late = stage.skip_late(state) if stage.skip_late is not None else None
            if late is not None:
                record.status, record.reason = "skipped", late
                record.seconds = round(time.perf_counter() - started, 4)
                self.reporter.stage_finished(stage.name, "skipped", record.seconds, _short(late))
                return None
            if stage.prepare is not None:
                t0 = time.perf_counter()
                await anyio.to_thread.run_sync(stage.prepare, state)
                record.driver_seconds += time.perf_counter() - t0
            calls = stage.calls(state)
        except StageInputError as exc:
            return self._fail(record, started, f"stage '{stage.name}' could not start: {exc}")
        except Exception as exc:  # the driver's own work (reading an output) failed: say what, keep going safely
            log.debug("stage %s preparation failed", stage.name, exc_info=True)
            return self._fail(record, started, f"stage '{stage.name}' could not start: {type(exc).__name__}: {exc}")
        self.reporter.stage_started(stage.name, stage.title, len(calls))
        for index, call in enumerate(calls):
            arguments = {**call.arguments, "run_id": state.run_id}

            async def progress(value: float, total: float | None, message: str | None, _i: int = index) -> None:
                fraction = value / total if total else value
                self.reporter.call_progress(stage.name, _i, fraction, message)

            try:
                done = await pool.call(
                    call.server, call.tool, arguments, timeout=state.options.timeout, progress=progress
                )
            except ToolCallError as exc:
                from bms_schema.runs import close_running_steps

                close_running_steps(state.run_dir, call.tool, f"{call.server} server stopped or timed out: {exc}")
                return self._fail(record, started, f"stage '{stage.name}' failed: {exc}")
            record.calls.append(
                CallRecord(
                    server=call.server,
                    tool=call.tool,
                    arguments=arguments,
                    envelope=done.envelope,
                    seconds=round(done.seconds, 4),
                    tool_seconds=round(done.tool_seconds, 4),
                )
            )
            self.reporter.call_progress(stage.name, index, 1.0, call.label or done.envelope.get("message"))
            problem = check_envelope(stage.name, done.envelope)
            if problem:
                return self._fail(
                    record, started, f"stage '{stage.name}' failed: {call.server} server, tool {call.tool}: {problem}"
                )
        record.status = "ok"
        record.seconds = round(time.perf_counter() - started, 4)
        envelopes = [c.envelope for c in record.calls]
        record.note = (
            stage.summary(envelopes) if stage.summary else (envelopes[-1].get("message", "") if envelopes else "")
        )
        self.reporter.stage_finished(stage.name, "ok", record.seconds, _short(record.note))
        return None

    def _fail(self, record: StageRecord, started: float, message: str) -> str:
        record.status, record.error = "error", message
        record.seconds = round(time.perf_counter() - started, 4)
        self.reporter.stage_finished(record.name, "error", record.seconds, message.splitlines()[0])
        return message


def check_envelope(stage: str, envelope: dict[str, Any]) -> str | None:
    """Problems an ``ok`` envelope can still carry that must stop the pipeline."""
    data = envelope.get("data") or {}
    if stage == "health":
        ws = data.get("workspace") or {}
        if ws.get("writable") is False:
            return f"workspace {ws.get('path')} is not writable: {ws.get('error')}"
    return None


def _short(text: Any) -> str:
    return str(text or "").splitlines()[0][:60] if text else ""
