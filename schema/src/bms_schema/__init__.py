"""bms_schema: the shared BMS-Flux contracts (canonical table, envelope, runs, registry, paths)."""

from . import columns
from .cells import resolve_cell_id
from .columns import CORE_COLUMNS, LABEL_COLUMNS, SCHEMA_VERSION, Limits
from .errors import BMSError, InputError, ModelError, PathError
from .models import Artifact, Envelope, Reading, RunManifest
from .normalize import NormalizeReport, load_limits, load_readings, normalize, sort_readings
from .paths import allowed_dirs, resolve_input, workspace
from .reader import iter_table, read_table, write_table
from .registry import ModelRegistry, ModelVersion
from .runs import Run, new_run_id

__all__ = [
    "Artifact", "BMSError", "CORE_COLUMNS", "Envelope", "InputError", "LABEL_COLUMNS", "Limits", "ModelError",
    "ModelRegistry", "ModelVersion", "NormalizeReport", "PathError", "Reading", "Run", "RunManifest",
    "SCHEMA_VERSION", "allowed_dirs", "columns", "iter_table", "load_limits", "load_readings", "new_run_id",
    "normalize", "read_table", "resolve_cell_id", "resolve_input", "sort_readings", "workspace", "write_table",
]
