"""Process-level settings: compute threads and library versions.

Five servers share two cores, so each uses one compute thread unless ``BMS_THREADS``
says otherwise. :func:`limit_threads` must run before NumPy/torch/xgboost are imported.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


class _NoTorch:
    """A meta-path finder under which ``import torch`` fails (see :func:`torch_blocked`)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"torch is not imported while {self.why}: {name}")
        return None


@contextmanager
def torch_blocked(why: str, drop: Callable[[str], bool]) -> Iterator[None]:
    """Inside, ``import torch`` fails with a ``ModuleNotFoundError`` naming ``why`` (a library that imports
    torch optionally, skops or SDV, then loads without it); afterwards the modules ``drop`` selects (what
    was half-imported around the failure) are removed from ``sys.modules``, so a later ``import torch``
    and its users load normally."""
    blocker = _NoTorch(why)
    sys.meta_path.insert(0, blocker)  # type: ignore[arg-type]
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)  # type: ignore[arg-type]
        for name in [m for m in sys.modules if drop(m)]:
            del sys.modules[name]
