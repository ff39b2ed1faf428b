"""MCP tools -> Ollama tool definitions, namespaced so names never clash (``anomaly__detect_anomalies``).

Ollama's ``Tool.Function.Parameters.Property`` keeps only ``type``, ``items``, ``description`` and
``enum``, so JSON-schema constructs a pydantic model emits (``anyOf`` with null for optional
fields, defaults, bounds, ``$ref``) are folded into those: the type of the non-null branch, and
the default and limits written into the description. ``run_id`` is hidden: the agent supplies one
itself so a whole conversation lands in one run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SEPARATOR = "__"
HIDDEN_ARGUMENTS = ("run_id",)


@dataclass(frozen=True)
class ToolRoute:
    """Where a namespaced tool name goes."""

    qualified: str
    server: str
    tool: str


def qualify(server: str, tool: str) -> str:
    return f"{server}{SEPARATOR}{tool}"


def split(qualified: str) -> tuple[str, str]:
    server, sep, tool = qualified.partition(SEPARATOR)
    if not sep or not server or not tool:
        raise KeyError(qualified)
    return server, tool


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = (root.get("$defs") or {}).get(ref.split("/")[-1], {})
        return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def convert_property(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """One JSON-schema property in the subset Ollama's ``Property`` model keeps."""
    schema = _resolve(schema, root)
    branches = [_resolve(b, root) for b in schema.get("anyOf") or schema.get("oneOf") or []]
    real = [b for b in branches if b.get("type") != "null"]
    base = real[0] if real else schema
    out: dict[str, Any] = {}
    kinds: list[str] = []
    for branch in real or [schema]:
        kind = branch.get("type") or ("string" if "enum" in branch or "const" in branch else None)
        if kind and kind not in kinds:
            kinds.append(kind)
    out["type"] = (kinds[0] if len(kinds) == 1 else kinds) if kinds else "string"
    if "items" in base:
        items = _resolve(base["items"], root)
        out["items"] = {"type": items.get("type", "string")}
    enum = base.get("enum") or schema.get("enum")
    consts = [b["const"] for b in real if "const" in b]
    if enum:
        out["enum"] = list(enum)
    elif consts and len(real) == len(consts):
        out["enum"] = consts
    notes = []
    description = schema.get("description") or base.get("description") or schema.get("title") or ""
    if "default" in schema and schema["default"] is not None:
        notes.append(f"default {schema['default']!r}")
    for key, word in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in base:
            notes.append(f"{word} {base[key]}")
    if real and len(branches) > len(real):
        notes.append("optional")
    for const in consts:
        if len(real) > len(consts):  # a number or the word 'auto': say the word is allowed
            notes.append(f"or {const!r}")
    out["description"] = (description + (f" ({', '.join(notes)})" if notes else "")).strip()
    return out


def to_ollama_tool(server: str, tool: Any) -> dict[str, Any]:
    """An MCP ``Tool`` as an Ollama tool definition (a plain dict the ``ollama`` client validates)."""
    schema = dict(getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None) or {})
    props = {name: convert_property(prop, schema) for name, prop in (schema.get("properties") or {}).items()
             if name not in HIDDEN_ARGUMENTS}
    required = [r for r in schema.get("required") or [] if r in props]
    title = getattr(getattr(tool, "annotations", None), "title", None)
    description = (tool.description or title or tool.name).strip()
    return {
        "type": "function",
        "function": {
            "name": qualify(server, tool.name),
            "description": f"[{server} server] {description}"[:1024],
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


def build_catalogue(tools_by_server: dict[str, list[Any]]) -> tuple[list[dict[str, Any]], dict[str, ToolRoute]]:
    """Ollama tool definitions for every server's tools, and the route of each qualified name."""
    definitions, routes = [], {}
    for server, tools in tools_by_server.items():
        for tool in tools:
            definition = to_ollama_tool(server, tool)
            name = definition["function"]["name"]
            definitions.append(definition)
            routes[name] = ToolRoute(qualified=name, server=server, tool=tool.name)
    return definitions, routes
