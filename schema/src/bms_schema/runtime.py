"""Process-level settings: compute threads and library versions.

Five servers share two cores, so each uses one compute thread unless ``BMS_THREADS``
says otherwise. :func:`limit_threads` must run before NumPy/torch/xgboost are imported.
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

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
