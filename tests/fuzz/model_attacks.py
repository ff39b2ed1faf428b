"""Hostile model files for the fuzz suite: a skops file that calls ``builtins.eval`` when loaded."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any


def _node(cls: str, module: str, loader: str, **extra: Any) -> dict[str, Any]:
    return {"__class__": cls, "__module__": module, "__loader__": loader, **extra}


def eval_skops(path: Path, marker: Path) -> Path:
    """A skops 0.16 (protocol 2) file whose only node is a reduce of ``builtins.eval``.

    skops rebuilds a ``LossNode`` by calling ``<__module__>.<__class__>(*__reduce__.args)``;
    here that is ``eval("open(marker, 'w').write('pwned')")``: if the file is ever loaded
    with ``builtins.eval`` trusted, ``marker`` appears.
    """
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    args = _node(
        "tuple",
        "builtins",
        "TupleNode",
        __id__=3,
        content=[_node("str", "builtins", "JsonNode", content=json.dumps(code), is_json=True, __id__=2)],
    )
    attrs = _node(
        "dict",
        "builtins",
        "DictNode",
        content={},
        __id__=4,
        key_types=_node("list", "builtins", "ListNode", content=[], __id__=5),
    )
    schema = _node(
        "eval",
        "builtins",
        "LossNode",
        __reduce__={"args": args},
        content=attrs,
        __id__=1,
        protocol=2,
        _skops_version="0.16.0",
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("schema.json", json.dumps(schema))
    return path
