"""Process-level settings: compute threads and library versions.

Five servers share two cores, so each uses one compute thread unless ``BMS_THREADS``
says otherwise. :func:`limit_threads` must run before NumPy/torch/xgboost are imported.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from importlib import metadata
from typing import Any

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def compute_threads() -> int:
    try:
        return max(1, int(os.environ.get("BMS_THREADS", "1")))
    except ValueError:
        return 1


def limit_threads() -> int:
    """Set the BLAS/OpenMP thread variables to ``BMS_THREADS`` (default 1), unless already set."""
    n = str(compute_threads())
    for var in THREAD_VARS:
        os.environ.setdefault(var, n)
    # Idle OpenMP threads otherwise spin: on 2 shared cores that made XGBoost training 5x slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return int(n)


def torch_threads() -> None:
    """Apply the thread limit to torch (call right after importing it)."""
    import torch

    n = compute_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of ``packages`` (read from metadata, nothing imported)."""
    found: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


class _Blocked:
    """A meta-path finder under which importing any of ``packages`` (top-level names) fails in the thread
    that created it (see :func:`imports_blocked`); other threads import normally."""

    def __init__(self, why: str, packages: tuple[str, ...]) -> None:
        self.why, self.packages, self.thread = why, packages, threading.get_ident()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name.split(".", 1)[0] in self.packages and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"{name.split('.', 1)[0]} is not imported while {self.why}: {name}")
        return None


@contextmanager
def imports_blocked(why: str, packages: tuple[str, ...], drop: Callable[[str], bool]) -> Iterator[None]:
    """Inside, importing any of ``packages`` in this thread fails with a ``ModuleNotFoundError`` naming ``why`` (a library
    that imports them optionally then loads without them); afterwards the modules ``drop`` selects (what
    was half-imported around the failure) are removed from ``sys.modules``, so a later import of them and
    of their users loads normally."""
    blocker = _Blocked(why, packages)
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)  # type: ignore[arg-type]
        for name in [m for m in sys.modules if drop(m)]:
            del sys.modules[name]


def torch_blocked(why: str, drop: Callable[[str], bool]) -> AbstractContextManager[None]:
    """:func:`imports_blocked` for torch: a library that imports torch optionally (skops, SDV) loads
    without it, and a later ``import torch`` and its users load normally."""
    return imports_blocked(why, ("torch",), drop)
