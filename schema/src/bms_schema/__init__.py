"""bms_schema: the shared BMS-Flux contracts (canonical table, envelope, runs, registry, paths).

Exports are resolved lazily (PEP 562), so ``import bms_schema.mcp_server`` in a server's
entry point does not pull in pandas: servers answer ``initialize`` fast.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from . import columns
from .lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CORE_COLUMNS": "bms_schema.columns",
        "LABEL_COLUMNS": "bms_schema.columns",
        "SCHEMA_VERSION": "bms_schema.columns",
        "Limits": "bms_schema.columns",
        "resolve_cell_id": "bms_schema.cells",
        "BMSError": "bms_schema.errors",
        "InputError": "bms_schema.errors",
        "ModelError": "bms_schema.errors",
        "PathError": "bms_schema.errors",
        "Artifact": "bms_schema.models",
        "Envelope": "bms_schema.models",
        "Reading": "bms_schema.models",
        "RunManifest": "bms_schema.models",
        "NormalizeReport": "bms_schema.normalize",
        "load_limits": "bms_schema.normalize",
        "load_readings": "bms_schema.normalize",
        "normalize": "bms_schema.normalize",
        "normalize_readings": "bms_schema.normalize",
        "sort_readings": "bms_schema.normalize",
        "allowed_dirs": "bms_schema.paths",
        "resolve_input": "bms_schema.paths",
        "workspace": "bms_schema.paths",
        "iter_table": "bms_schema.reader",
        "read_table": "bms_schema.reader",
        "write_table": "bms_schema.reader",
        "ModelRegistry": "bms_schema.registry",
        "ModelVersion": "bms_schema.registry",
        "Run": "bms_schema.runs",
        "new_run_id": "bms_schema.runs",
    },
)
__all__ = ["columns", *__all__]


class _Package(types.ModuleType):
    """Keeps the function ``bms_schema.normalize`` from being replaced by the submodule of that name.

    Importing a submodule sets it as an attribute of its package; for ``normalize`` (both a
    module and the main function) the function must win, as ``from bms_schema import normalize``
    promises. ``from bms_schema.normalize import ...`` still reaches the module via sys.modules.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "normalize" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
