"""What a person sees while the pipeline runs: a rich progress bar per stage fed by MCP progress."""

from __future__ import annotations

from typing import Any, Protocol


class Reporter(Protocol):
    def stage_started(self, name: str, title: str, calls: int) -> None: ...
    def call_progress(self, name: str, index: int, fraction: float, message: str | None) -> None: ...
    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None: ...


class SilentReporter:
    """Records events (tests read them) and shows nothing."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def stage_started(self, name: str, title: str, calls: int) -> None:
        self.events.append(("start", name, calls))

    def call_progress(self, name: str, index: int, fraction: float, message: str | None) -> None:
        self.events.append(("progress", name, index, fraction, message))

    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        self.events.append(("finish", name, status, round(seconds, 3), note))


class RichReporter:
    """One bar per stage: the fraction of its tool calls done, moved by the servers' MCP progress."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("{task.fields[mark]} {task.description:<28}"),
            BarColumn(bar_width=30),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[message]}"),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> "RichReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def stage_started(self, name: str, title: str, calls: int) -> None:
        self.tasks[name] = self.progress.add_task(title, total=max(calls, 1), mark="[cyan]>", message="")

    def call_progress(self, name: str, index: int, fraction: float, message: str | None) -> None:
        task = self.tasks.get(name)
        if task is not None:
            self.progress.update(task, completed=index + min(max(fraction, 0.0), 1.0), message=(message or "")[:60])

    def stage_finished(self, name: str, status: str, seconds: float, note: str = "") -> None:
        mark = {"ok": "[green]✓", "error": "[red]✗", "skipped": "[yellow]-"}.get(status, "?")
        task = self.tasks.get(name)
        if task is None:
            task = self.tasks[name] = self.progress.add_task(name, total=1, mark=mark, message="")
        total = self.progress.tasks[task].total or 1
        self.progress.update(
            task,
            completed=total if status == "ok" else self.progress.tasks[task].completed,
            mark=mark,
            message=note[:60],
        )
        self.progress.stop_task(task)
