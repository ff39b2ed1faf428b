"""Safe (non-pickle) persistence helpers for scikit-learn objects and arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

#: Module prefixes whose types skops may instantiate when loading.
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


def save_sklearn(obj: Any, path: str | Path) -> Path:
    """Save a scikit-learn estimator with skops (no pickle)."""
    import skops.io as sio

    path = Path(path)
    sio.dump(obj, path)
    return path


def load_sklearn(path: str | Path) -> Any:
    """Load a skops file, refusing any type outside scikit-learn/NumPy/SciPy."""
    import skops.io as sio

    path = Path(path)
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:
        raise ModelError(f"{path.name} is not a readable skops file: {exc}") from exc
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ModelError(f"{path.name} contains types that are not allowed to load: {', '.join(refused)}")
    return sio.load(path, trusted=untrusted)


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
