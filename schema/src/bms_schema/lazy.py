"""Lazy package exports (PEP 562): a package names its public objects without importing them.

Server entry points import their package; with lazy exports that costs nothing until an
object is used, so servers answer ``initialize`` fast although the logic needs pandas, torch...
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``; ``exports`` maps a name to its module
    (absolute, or relative to the package when it starts with a dot)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(import_module(module, package), name)
        setattr(import_module(package), name, value)  # cache: later lookups skip __getattr__
        return value

    return __getattr__, sorted(exports)
