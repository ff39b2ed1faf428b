"""The failure tests' small synthetic fleet (tests/failure/fleet.py), importable from the fuzz suite."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "_failure_fleet", Path(__file__).resolve().parents[1] / "failure" / "fleet.py"
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
synthetic_fleet = _module.synthetic_fleet
