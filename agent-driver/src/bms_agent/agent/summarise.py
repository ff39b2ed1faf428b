"""Shrink a tool envelope to what belongs in a model's context: paths, not megabytes."""

from __future__ import annotations

import json
from typing import Any

MAX_CHARS = 4000
MAX_LIST = 10
MAX_STRING = 400


def _shrink(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        if depth >= 4:
            return f"{{... {len(value)} keys}}"
        return {str(k): _shrink(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_shrink(v, depth + 1) for v in list(value)[:MAX_LIST]]
        if len(value) > MAX_LIST:
            items.append(f"... {len(value) - MAX_LIST} more items")
        return items
    if isinstance(value, str) and len(value) > MAX_STRING:
        return value[:MAX_STRING] + f"... ({len(value)} characters)"
    if isinstance(value, float):
        return round(value, 6)
    return value


def summarise_envelope(envelope: dict[str, Any], max_chars: int = MAX_CHARS) -> str:
    """JSON text for the model: status, message, small data, artifact paths and kinds."""
    summary: dict[str, Any] = {"status": envelope.get("status"), "message": envelope.get("message")}
    if envelope.get("run_id"):
        summary["run_id"] = envelope["run_id"]
    summary["data"] = _shrink(envelope.get("data") or {})
    arts = envelope.get("artifacts") or []
    summary["artifacts"] = [
        {"path": a.get("path"), "kind": a.get("kind"), "what": (a.get("description") or "")[:120]}
        for a in arts[:20]
        if isinstance(a, dict)
    ]
    if len(arts) > 20:
        summary["artifacts_more"] = len(arts) - 20
    text = json.dumps(summary, default=str)
    if len(text) > max_chars:  # still too big: keep the essentials and say what was cut
        summary["data"] = {
            "note": f"data cut to fit the context ({len(json.dumps(summary['data'], default=str))} "
            "characters); read the artifacts for details",
            "keys": list((envelope.get("data") or {}).keys())[:40],
        }
        text = json.dumps(summary, default=str)
        if len(text) > max_chars:
            summary["artifacts"] = summary["artifacts"][:5]
            text = json.dumps(summary, default=str)[:max_chars]
    return text
