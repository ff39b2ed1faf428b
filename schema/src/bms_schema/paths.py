"""Workspace layout and the path policy for tool inputs.

``BMS_WORKSPACE`` (default ``~/.bms-flux/workspace``) holds ``data/``, ``runs/`` and
``models/``. Tool inputs must resolve inside the workspace or a directory listed in
``BMS_ALLOWED_DIRS`` (``os.pathsep``-separated). ``..`` tricks and symlinks pointing
outside are refused: the check is done on the fully resolved path.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import PathError

DEFAULT_WORKSPACE = Path("~/.bms-flux/workspace")


def workspace() -> Path:
    """The workspace directory (created if needed), fully resolved."""
    root = Path(os.environ.get("BMS_WORKSPACE") or DEFAULT_WORKSPACE).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("data", "runs", "models"):
        (root / sub).mkdir(exist_ok=True)
    return root.resolve()


def allowed_dirs() -> list[Path]:
    """Workspace first, then every existing directory in ``BMS_ALLOWED_DIRS``."""
    dirs = [workspace()]
    for entry in os.environ.get("BMS_ALLOWED_DIRS", "").split(os.pathsep):
        entry = entry.strip()
        if entry:
            dirs.append(Path(entry).expanduser().resolve())
    return dirs


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def resolve_input(path: str | os.PathLike[str], *, must_exist: bool = True, kind: str = "data") -> Path:
    """Resolve a user-supplied path and check it against the policy.

    A relative path is taken relative to the workspace. Raises :class:`PathError` when
    the resolved path (symlinks followed) lies outside every allowed directory, or when
    ``must_exist`` and nothing is there.

    ``kind``: ``"data"`` (the default for tool inputs) is a CSV/Parquet file or a dataset
    folder (a partitioned Parquet dataset, or a folder of CSV files: see
    :func:`bms_schema.reader.dataset_files`); ``"file"`` a file only; ``"folder"`` a folder.
    """
    if path is None or str(path).strip() == "":
        raise PathError("no path given")
    if "\x00" in str(path):
        raise PathError(f"path {str(path)!r} contains a NUL byte (\\x00), which no file name can hold: remove it")
    raw = Path(str(path)).expanduser()
    base = workspace()
    candidate = raw if raw.is_absolute() else base / raw
    resolved = candidate.resolve()
    roots = allowed_dirs()
    if not any(_inside(resolved, root) for root in roots):
        shown = ", ".join(str(r) for r in roots)
        raise PathError(
            f"path '{path}' resolves to {resolved}, outside the workspace and allowed directories ({shown}); "
            "move the file into the workspace or add its folder to BMS_ALLOWED_DIRS"
        )
    if must_exist and not resolved.exists():
        raise PathError(f"{'file' if kind == 'data' else kind} not found: {resolved}")
    if must_exist and kind == "data":
        if resolved.is_dir():
            from .reader import dataset_files

            dataset_files(resolved)  # refuses an empty or mixed folder, naming it
        elif not resolved.is_file():
            raise PathError(f"not a file or dataset folder: {resolved}")
    if must_exist and kind == "file" and not resolved.is_file():
        raise PathError(f"not a file: {resolved}")
    if must_exist and kind == "folder" and not resolved.is_dir():
        raise PathError(f"not a folder: {resolved}")
    return resolved


def runs_dir() -> Path:
    return workspace() / "runs"


def models_dir() -> Path:
    return workspace() / "models"


def data_dir() -> Path:
    return workspace() / "data"
