"""Runs: every tool call writes into a run folder with its own log and ``manifest.json``.

``runs/<run_id>/`` holds one subfolder per tool call (``<NN>-<tool>/``) and a run-level
``manifest.json`` listing the steps. Run ids sort by creation time
(``20261125T070102123Z-3fa2c1``). A caller may pass an existing ``run_id`` so a whole
pipeline lands in one folder; steps are numbered under a file lock, so two servers
writing into the same run never collide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, file_lock, to_jsonable
from .errors import InputError
from .leftovers import owner_tag, tag_alive
from .models import Artifact, RunManifest
from .paths import runs_dir

RUN_ID_PATTERN = re.compile(r"^\d{8}T\d{9}Z-[0-9a-f]{6}$")
LOGGER_NAME = "bms"


def new_run_id() -> str:
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id or ""):
        raise InputError(f"run_id '{run_id}' is not a BMS-Flux run id (like 20261125T070102123Z-3fa2c1)")
    return run_id


def fingerprint(path: Path, chunk: int = 1 << 20) -> dict[str, Any]:
    """Size, modification time and BLAKE2b digest of a file; of a dataset folder, the total size,
    the number of files, the newest modification time and one digest over every file's relative
    path and content (so a renamed partition changes it too)."""
    path = Path(path)
    digest = hashlib.blake2b(digest_size=16)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
        size, mtime = 0, 0.0
        for file in files:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as handle:
                while block := handle.read(chunk):
                    digest.update(block)
            stat = file.stat()
            size, mtime = size + stat.st_size, max(mtime, stat.st_mtime)
        return {
            "path": str(path),
            "kind": "folder",
            "files": len(files),
            "bytes": size,
            "mtime": mtime,
            "blake2b": digest.hexdigest(),
        }
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime": stat.st_mtime, "blake2b": digest.hexdigest()}


class Run:
    """One tool call inside a run folder: step folder, log file, manifest, artifacts."""

    def __init__(self, tool: str, server: str, parameters: dict[str, Any] | None = None, run_id: str | None = None):
        self.run_id = check_run_id(run_id) if run_id else new_run_id()
        self.run_dir = runs_dir() / self.run_id
        self.tool = tool
        self.started = time.time()
        with file_lock(self.run_dir / ".lock"):
            index = self._read_index()
            number = len(index.get("steps", [])) + 1
            self.step = f"{number:02d}-{tool}"
            self.dir = self.run_dir / self.step
            self.dir.mkdir(parents=True, exist_ok=False)
            index.setdefault("run_id", self.run_id)
            index.setdefault("created", _now())
            index.setdefault("steps", []).append(
                {"step": self.step, "tool": tool, "status": "running", "started": _now(), "owner": owner_tag()}
            )
            atomic_write_json(self.run_dir / "manifest.json", index)
        self.log_path = self.dir / "tool.log"
        self.manifest = RunManifest(
            run_id=self.run_id,
            step=self.step,
            tool=tool,
            server=server,
            status="running",
            parameters=to_jsonable(parameters or {}),
        )
        self.timings: dict[str, float] = {}
        self._handler = logging.FileHandler(self.log_path, encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger = logging.getLogger(f"{LOGGER_NAME}.{tool}")
        base = logging.getLogger(LOGGER_NAME)
        if base.level == logging.NOTSET:
            base.setLevel(logging.INFO)
        base.addHandler(self._handler)
        self.write_manifest()

    # -- recording -------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """A path for an artifact inside this step's folder."""
        target = (self.dir / name).resolve()
        target.relative_to(self.dir.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add_artifact(self, path: str | Path, kind: str, description: str = "") -> Path:
        path = Path(path)
        self.manifest.artifacts.append(Artifact(path=str(path), kind=kind, description=description))
        return path

    def add_input(self, path: str | Path) -> None:
        """Record an input file or dataset folder with its fingerprint."""
        self.manifest.inputs.append(fingerprint(Path(path)))

    def add_model(self, name: str, version: str, path: str | Path) -> None:
        self.manifest.models.append({"name": name, "version": version, "path": str(path)})

    @contextmanager
    def timed(self, label: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[label] = round(time.perf_counter() - start, 4)

    def write_manifest(self) -> None:
        atomic_write_json(self.dir / "manifest.json", self.manifest.model_dump())

    # -- closing ---------------------------------------------------------------------
    def finish(self, status: str, message: str, versions: dict[str, Any] | None = None) -> None:
        """Record the outcome. On error, artifacts written so far are removed (no partial output)."""
        seconds = round(time.time() - self.started, 4)
        if status == "error":
            _discard_artifacts(self.manifest)
            _discard_step_files(self.dir)
        self.manifest.status = status  # type: ignore[assignment]
        self.manifest.message = message
        self.manifest.timings = {
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "seconds": seconds,
            **self.timings,
        }
        self.manifest.versions = versions or {}
        self.write_manifest()
        with file_lock(self.run_dir / ".lock"):
            index = self._read_index()
            for step in index.get("steps", []):
                if step["step"] == self.step:
                    step.update(status=status, seconds=seconds)
            atomic_write_json(self.run_dir / "manifest.json", index)
        logging.getLogger(LOGGER_NAME).removeHandler(self._handler)
        self._handler.close()

    def _read_index(self) -> dict[str, Any]:
        path = self.run_dir / "manifest.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return {}


def _discard_artifacts(manifest: RunManifest) -> None:
    """Delete a failed step's artifacts (no partial output survives) and forget them."""
    for artifact in manifest.artifacts:
        Path(artifact.path).unlink(missing_ok=True)
    manifest.artifacts = []


#: Files of a step folder that survive a failed call (the record of what happened).
STEP_RECORD_FILES = frozenset({"tool.log", "manifest.json"})


def _discard_step_files(step_dir: Path) -> None:
    """Remove everything a failed step wrote into its folder, listed as an artifact or not (its log stays)."""
    import shutil

    if not step_dir.is_dir():
        return
    for entry in step_dir.iterdir():
        if entry.name in STEP_RECORD_FILES:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def list_steps(run_id: str) -> list[dict[str, Any]]:
    """The steps recorded in a run's manifest (empty for an unknown run)."""
    path = runs_dir() / check_run_id(run_id) / "manifest.json"
    if not path.exists():
        return []
    return json.loads(path.read_text()).get("steps", [])


def close_running_steps(
    run_dir: Path,
    tool: str | None = None,
    message: str = "the server stopped during the call",
    only: Callable[[dict[str, Any]], str | None] | None = None,
) -> list[str]:
    """Mark steps still ``running`` (of ``tool``, or all) as ``error``: for a caller whose server crashed.

    Updates the run-level manifest and each step's own manifest; everything the crashed step
    wrote (listed artifacts and any other file but its log) is removed, as for any failed step.
    ``only(step)`` may restrict which steps are closed: it returns the message to record, or
    None to leave the step alone. Returns the steps it closed.
    """
    run_dir = Path(run_dir)
    closed: list[str] = []
    if not (run_dir / "manifest.json").exists():
        return closed
    with file_lock(run_dir / ".lock"):
        try:
            index = json.loads((run_dir / "manifest.json").read_text())
        except (OSError, json.JSONDecodeError):
            return closed
        for step in index.get("steps", []):
            if step.get("status") != "running" or (tool is not None and step.get("tool") != tool):
                continue
            why = message if only is None else only(step)
            if why is None:
                continue
            step["status"] = "error"
            closed.append(step["step"])
            step_dir = run_dir / str(step["step"])
            step_manifest = step_dir / "manifest.json"
            if step_manifest.exists():
                try:
                    manifest = RunManifest.model_validate_json(step_manifest.read_text())
                except ValueError:
                    manifest = None
                if manifest is not None:
                    _discard_artifacts(manifest)
                    manifest.status = "error"
                    manifest.message = why
                    atomic_write_json(step_manifest, manifest.model_dump())
            _discard_step_files(step_dir)
        if closed:
            atomic_write_json(run_dir / "manifest.json", index)
    return closed


def close_dead_steps(run_dir: Path, grace: float = 6 * 3600.0) -> list[str]:
    """Close steps left ``running`` by a process that no longer exists (or, untagged, older than ``grace`` s)."""

    def dead(step: dict[str, Any]) -> str | None:
        owner = str(step.get("owner") or "")
        alive = tag_alive(owner)
        if alive is None:  # no owner recorded (or another host's): only an old step is presumed abandoned
            try:
                started = datetime.fromisoformat(str(step.get("started"))).timestamp()
            except ValueError:
                return None
            if time.time() - started <= grace:
                return None
            return "the step never finished (its server stopped); closed by a later server start"
        if alive:
            return None
        return (
            f"the server process ({owner.split('t')[0]}) stopped during the call (killed or crashed); "
            "closed by the next server start: run the tool again"
        )

    return close_running_steps(run_dir, only=dead)
