"""MCP tools -> Ollama tool definitions, namespaced so names never clash (``anomaly__detect_anomalies``).

Ollama's ``Tool.Function.Parameters.Property`` keeps only ``type``, ``items``, ``description`` and
``enum``, so JSON-schema constructs a pydantic model emits (``anyOf`` with null for optional
fields, defaults, bounds, ``$ref``) are folded into those: the type of the non-null branch, and
the default and limits written into the description. ``run_id`` is hidden: the agent supplies one
itself so a whole conversation lands in one run folder.
"""

from __future__ import annotations

import json
import re
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
    props = {
        name: convert_property(prop, schema)
        for name, prop in (schema.get("properties") or {}).items()
        if name not in HIDDEN_ARGUMENTS
    }
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


# -- context budget ------------------------------------------------------------------------
#: Words that make a server relevant to a question (matched as word prefixes, lower case).
SERVER_WORDS: dict[str, tuple[str, ...]] = {
    "datagen": ("simulat", "synthetic", "sdv", "generat", "fake", "example data", "demo"),
    "preprocess": (
        "clean",
        "preprocess",
        "impute",
        "imputation",
        "mice",
        "feature",
        "scal",
        "quality",
        "missing",
        "sentinel",
        "dropout",
        "duplicate",
        "health",
        "review",
    ),
    "anomaly": (
        "anomal",
        "abnormal",
        "outlier",
        "alarm",
        "alert",
        "unusual",
        "strange",
        "odd",
        "detect",
        "fault",
        "spike",
        "health",
        "review",
        "investigat",
        "why",
    ),
    "failure": (
        "fail",
        "die",
        "dying",
        "dead",
        "death",
        "risk",
        "remaining",
        "life",
        "rul",
        "replace",
        "end of life",
        "health",
        "review",
        "investigat",
        "worst",
        "weak",
        "alarm",
    ),
    "forecast": ("forecast", "predict", "future", "trend", "next", "tomorrow", "week", "ahead", "investigat"),
}
DATA_FILE = re.compile(r"\S+\.(csv|parquet)\b", re.IGNORECASE)
#: Tools offered only when the question is about them.
ON_REQUEST = {
    "health_check": ("health check", "health_check", "server", "version", "status of the tool"),
    "sdv_generate": ("synthetic", "sdv"),
    "sdv_sample": ("synthetic", "sdv"),
    "sdv_evaluate": ("synthetic", "sdv"),
    "sdv_visualize": ("synthetic", "sdv"),
}


def estimate_tokens(definitions: list[dict[str, Any]]) -> int:
    """About four characters per token for JSON tool definitions."""
    return len(json.dumps(definitions)) // 4


def relevant_servers(question: str, servers: list[str]) -> list[str]:
    """The servers a question needs; all of them when nothing matches. Without a data file, the
    simulator joins so the model can make data to analyse."""
    text = question.lower()
    picked = [s for s in servers if any(re.search(r"\b" + re.escape(w), text) for w in SERVER_WORDS.get(s, ()))]
    if not picked:
        return list(servers)
    if not DATA_FILE.search(question) and "datagen" in servers and "datagen" not in picked:
        picked.append("datagen")
    return [s for s in servers if s in picked]


def compact(definition: dict[str, Any], max_description: int = 400) -> dict[str, Any]:
    """The definition with its description cut to the first paragraph (at a sentence end when long)."""
    fn = dict(definition["function"])
    text = fn.get("description") or ""
    first = text.split("\n\n")[0].replace("\n", " ")
    if len(first) > max_description:
        cut = first[:max_description]
        end = cut.rfind(". ")
        first = cut[: end + 1] if end > 80 else cut.rsplit(" ", 1)[0] + " ..."
    fn["description"] = first
    return {**definition, "function": fn}


def select_tools(
    definitions: list[dict[str, Any]], routes: dict[str, ToolRoute], question: str, max_tokens: int | None
) -> list[dict[str, Any]]:
    """The tools worth sending for ``question`` within ``max_tokens`` (compact descriptions).

    Keeps the relevant servers' tools, drops the ones only asked for by name (health checks, SDV)
    unless the question mentions them, then drops the least relevant until the budget fits.
    """
    text = question.lower()
    servers = list(dict.fromkeys(routes[d["function"]["name"]].server for d in definitions))
    wanted = relevant_servers(question, servers)
    kept = []
    for d in definitions:
        route = routes[d["function"]["name"]]
        if route.server not in wanted:
            continue
        words = ON_REQUEST.get(route.tool)
        if words and not any(w in text for w in words):
            continue
        kept.append(compact(d))
    if not kept:
        kept = [compact(d) for d in definitions]
    if max_tokens:
        # least relevant last: servers in the order of their first matching word, simulator last
        question_words = {w for w in re.findall(r"[a-z]{4,}", text)}

        def score(d: dict[str, Any]) -> int:
            route = routes[d["function"]["name"]]
            hits = sum(1 for w in SERVER_WORDS.get(route.server, ()) if w in text)
            about = (route.tool.replace("_", " ") + " " + d["function"].get("description", "")).lower()
            overlap = sum(1 for w in question_words if w in about)
            training = -2 if route.tool.startswith("train") and "train" not in text else 0  # answer, don't retrain
            return 3 * hits + overlap + (5 if route.tool in text else 0) + training

        kept.sort(key=score, reverse=True)
        while len(kept) > 1 and estimate_tokens(kept) > max_tokens:
            kept.pop()
    return kept
