"""Leftovers of killed processes: found by owner, cleaned by the next server start and ``health_check``.

A tool call killed mid-way (SIGKILL, OOM killer, a closed laptop) leaves what it was doing:
its step ``running`` in the run manifests, temporary files of atomic writes (``*.tmp``), the
preprocessing spill folder (``.bms-spill-*``), a model being staged (``models/*/.staging-*``)
or a version registered but not yet published (``models/*/.pending-*``). Every such name
carries its owner's tag, ``pid<PID>t<START>h<HOST>`` (the process id, its start time - so a
recycled pid is not mistaken for the owner - and the host, so a workspace shared between
machines never judges another machine's pids); :func:`clean_workspace` removes only what belongs
to processes that are gone. Untagged leftovers (written by older versions) are removed once
older than :data:`UNTAGGED_GRACE_SECONDS`. Nothing of a live process is ever touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("bms.leftovers")

TAG_PATTERN = re.compile(r"pid(\d+)t(\d+)(?:h([0-9a-f]{8}))?")
#: Age after which an untagged leftover (no owner recorded) is treated as abandoned.
UNTAGGED_GRACE_SECONDS = 6 * 3600.0


def _start_time(pid: int) -> int | None:
    """The process start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(raw[raw.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


@lru_cache(maxsize=1)
def host_id() -> str:
    """8 hex digits naming this machine: a pid is only checked on the host that wrote it (shared workspaces)."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


@lru_cache(maxsize=1)
def _own_tag(pid: int) -> str:
    return f"pid{pid}t{_start_time(pid) or 0}h{host_id()}"


def owner_tag() -> str:
    """This process's tag, ``pid<PID>t<START>``, to put into the names of temporary files and folders."""
    return _own_tag(os.getpid())


def owner_alive(pid: int, start: int) -> bool:
    """Whether the process that wrote a tag still runs (same pid *and* same start time)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else
    now = _start_time(pid)
    return start == 0 or now is None or now == start


def tag_alive(name: str) -> bool | None:
    """Whether the owner named in ``name`` lives; None when unknown (no tag, or written on another host)."""
    match = TAG_PATTERN.search(name)
    if match is None or (match.group(3) is not None and match.group(3) != host_id()):
        return None
    return owner_alive(int(match.group(1)), int(match.group(2)))


def _abandoned(path: Path, grace: float) -> bool:
    alive = tag_alive(path.name)
    if alive is not None:
        return not alive
    try:
        return time.time() - path.lstat().st_mtime > grace
    except OSError:
        return False


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("could not remove leftover %s: %s", path, exc)
        return False


def _is_tmp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _clean_folder(folder: Path, report: dict[str, list[str]], grace: float) -> None:
    """Temp files and spill folders directly inside ``folder``."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if _is_tmp(name) and _abandoned(Path(entry.path), grace):
            if _remove(Path(entry.path)):
                report["tmp_files"].append(entry.path)
        elif name.startswith(".bms-spill-") and _abandoned(Path(entry.path), grace):
            if _remove(Path(entry.path)):
                report["spill_folders"].append(entry.path)


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [
            Path(e.path) for e in os.scandir(folder) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")
        ]
    except OSError:
        return []


def clean_workspace(root: Path | None = None, grace: float = UNTAGGED_GRACE_SECONDS) -> dict[str, Any]:
    """Close steps of dead processes and remove their leftovers; returns what was done (lists of paths/steps).

    Looks at ``data/``, ``runs/<run>/``, ``runs/<run>/<step>/`` and ``models/<name>/``.
    """
    from .paths import workspace
    from .registry import ModelRegistry
    from .runs import close_dead_steps

    root = Path(root) if root is not None else workspace()
    report: dict[str, list[str]] = {
        "steps_closed": [],
        "tmp_files": [],
        "spill_folders": [],
        "staging_folders": [],
        "pending_versions": [],
    }
    _clean_folder(root, report, grace)
    _clean_folder(root / "data", report, grace)
    runs = root / "runs"
    for run_dir in _subfolders(runs):
        report["steps_closed"].extend(f"{run_dir.name}/{s}" for s in close_dead_steps(run_dir, grace))
        _clean_folder(run_dir, report, grace)
        for step_dir in _subfolders(run_dir):
            _clean_folder(step_dir, report, grace)
    models = root / "models"
    if models.is_dir():
        registry = ModelRegistry(models)
        for name in registry.names():
            _clean_folder(models / name, report, grace)
            done = registry.clean_stale(name, grace)
            report["staging_folders"].extend(done["staging"])
            report["pending_versions"].extend(done["pending"])
    if any(report.values()):
        log.info("cleaned leftovers of stopped processes: %s", json.dumps({k: len(v) for k, v in report.items()}))
    return report
