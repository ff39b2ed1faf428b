"""Safe (non-pickle) persistence helpers for scikit-learn objects and arrays.

scikit-learn objects are stored with skops. A skops file is a zip whose ``schema.json``
names, for every node, the Python type (``__module__`` + ``__class__``) and the loader
that rebuilds it; loading a node may *call* that type (a "reduce" node calls it with the
stored arguments). So a loader that trusts a whole module trusts every callable in it:
``builtins.eval`` called with a code string runs that code. :func:`load_sklearn`
therefore audits the file itself before skops builds anything: every node anywhere in
``schema.json`` must name a type in :data:`ALLOWED_TYPES` (the exact types BMS-Flux saves)
and a loader in :data:`ALLOWED_LOADERS`; anything else is refused with the type named.
:func:`save_sklearn` runs the same audit on what it has just written, so a model that
could not be loaded again is never registered.
"""

from __future__ import annotations

import json
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

#: Every type a BMS-Flux skops file may contain, by exact name (``module.Class``), measured by
#: saving each scikit-learn object the project writes (the anomaly detector's
#: ``RobustScaler``, ``IsolationForest`` with its ``ExtraTreeRegressor``/``Tree`` members,
#: ``Nystroem``, ``SGDOneClassSVM`` with its ``Hinge`` loss) and listing the nodes of each
#: file. The containers and primitives are skops' own encodings of attributes; the NumPy
#: scalar types are how skops stores a NumPy number attribute. To save a new kind of
#: object, add its exact types here (and a test that saves and loads it).
ALLOWED_TYPES: frozenset[str] = frozenset(
    {
        # containers / primitives as skops encodes attributes
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.str",
        # arrays and NumPy scalars
        "numpy.ndarray",
        "numpy.float64",
        "numpy.float32",
        "numpy.int64",
        "numpy.int32",
        # estimators the project saves
        "sklearn.preprocessing._data.RobustScaler",
        "sklearn.ensemble._iforest.IsolationForest",
        "sklearn.tree._classes.ExtraTreeRegressor",
        "sklearn.tree._tree.Tree",
        "sklearn.kernel_approximation.Nystroem",
        "sklearn.linear_model._stochastic_gradient.SGDOneClassSVM",
        "sklearn.linear_model._sgd_fast.Hinge",
    }
)

#: The skops node loaders those types use. Function, method, partial, operator and
#: generic object-from-reduce loaders are not needed and not allowed.
ALLOWED_LOADERS: frozenset[str] = frozenset(
    {
        "DictNode",
        "ListNode",
        "TupleNode",
        "JsonNode",
        "TypeNode",
        "NdArrayNode",
        "ObjectNode",
        "TreeNode",
        "LossNode",
    }
)


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    """Every skops node (a dict with a ``__loader__``) anywhere in ``schema.json``."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item or "__module__" in item or "__class__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _skops_io() -> Any:
    """``skops.io``, imported without importing torch.

    On import skops lists scikit-learn's estimators (``sklearn.utils.all_estimators``), whose
    ``pkgutil.walk_packages`` imports every scikit-learn package, ``sklearn.externals.array_api_compat.torch``
    too, and that imports torch when it is installed: about 2.5 s (4 s under load) of start-up of every
    process that loads a model, for nothing (no estimator lives there; the array-API adapter is only used
    with ``array_api_dispatch``). While skops is first imported in a process without torch, a meta-path
    finder makes ``import torch`` fail; walk_packages skips a package that fails to import. The adapter's
    half-imported modules are dropped afterwards, so a process that imports torch later (VAE training)
    gets both normally.
    """
    if "skops.io" in sys.modules or "torch" in sys.modules:
        import skops.io as sio

        return sio
    from .runtime import torch_blocked

    with torch_blocked(
        "skops loads (bms_schema.safe_io)", lambda m: m.startswith("sklearn.externals.array_api_compat.torch")
    ):
        import skops.io as sio
    return sio


def audit_skops(path: str | Path) -> list[str]:
    """Check a skops file against the allow-lists; return the types skops itself flags.

    Raises :class:`ModelError` naming the file and the first refused types.
    """
    sio = _skops_io()

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelError(f"{path.name} is not a readable skops model file ({exc}): retrain the model") from exc
    refused: set[str] = set()
    for node in _nodes(schema):
        module, cls, loader = node.get("__module__"), node.get("__class__"), node.get("__loader__")
        if not isinstance(module, str) or not isinstance(cls, str):
            refused.add(f"a node without a type (loader {loader!r})")
            continue
        name = f"{module}.{cls}"
        if name not in ALLOWED_TYPES:
            refused.add(name)
        elif loader not in ALLOWED_LOADERS:
            refused.add(f"{name} via loader {loader!r}")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # skops raises many kinds on a malformed schema
        raise ModelError(
            f"{path.name} is not a readable skops model file ({type(exc).__name__}: {exc}): retrain the model"
        ) from exc
    refused.update(t for t in untrusted if t not in ALLOWED_TYPES)
    if refused:
        names = sorted(refused)
        raise ModelError(
            f"{path.name} refused: it contains type(s) BMS-Flux never saves and will not load: "
            f"{', '.join(names[:5])}{' ...' if len(names) > 5 else ''}. The file was not loaded (nothing in it ran); "
            "it may have been tampered with: delete this model version and retrain"
        )
    return list(untrusted)


def save_sklearn(obj: Any, path: str | Path) -> Path:
    """Save a scikit-learn estimator with skops (no pickle), refusing types it could not load back."""
    sio = _skops_io()

    path = Path(path)
    sio.dump(obj, path)
    try:
        audit_skops(path)
    except ModelError as exc:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"cannot save {type(obj).__name__}: {exc}; add its exact types to "
            "bms_schema.safe_io.ALLOWED_TYPES if it is safe"
        ) from exc
    return path


def load_sklearn(path: str | Path) -> Any:
    """Load a skops file whose every node is one of :data:`ALLOWED_TYPES`; refuse anything else."""
    sio = _skops_io()

    path = Path(path)
    trusted = audit_skops(path)
    try:
        return sio.load(path, trusted=trusted)
    except Exception as exc:
        raise ModelError(f"{path.name} could not be loaded ({type(exc).__name__}: {exc}): retrain the model") from exc


def save_arrays(path: str | Path, **arrays: np.ndarray) -> Path:
    path = Path(path)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # stubs: a **kwarg could bind allow_pickle
    return path


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}
