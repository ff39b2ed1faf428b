"""Find outputs in tool envelopes by kind, suffix or name - never by guessing file layouts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv", ".parquet")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg")


def artifacts_of(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in envelope.get("artifacts") or [] if isinstance(a, dict) and a.get("path")]


def find_artifact(
    envelopes: Iterable[dict[str, Any]],
    *,
    kinds: Iterable[str] = (),
    suffixes: Iterable[str] = (),
    contains: Iterable[str] = (),
    exclude: Iterable[str] = (),
) -> dict[str, Any] | None:
    """The first artifact matching every given criterion.

    ``kinds``: accepted ``kind`` values; ``suffixes``: accepted file endings; ``contains``: words of
    which at least one must appear in the file name or description (in order of preference);
    ``exclude``: words that must not appear in the file name.
    """
    kinds, suffixes, contains, exclude = tuple(kinds), tuple(suffixes), tuple(contains), tuple(exclude)
    candidates = []
    for env in envelopes:
        for art in artifacts_of(env):
            name = Path(art["path"]).name.lower()
            if kinds and art.get("kind") not in kinds:
                continue
            if suffixes and not name.endswith(suffixes):
                continue
            if any(word in name for word in exclude):
                continue
            candidates.append(art)
    if not contains:
        return candidates[0] if candidates else None
    for word in contains:
        for art in candidates:
            text = (Path(art["path"]).name + " " + str(art.get("description", ""))).lower()
            if word in text:
                return art
    return None


def images(envelopes: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every image artifact (PNG etc.) of the envelopes, in order."""
    return [a for env in envelopes for a in artifacts_of(env) if a["path"].lower().endswith(IMAGE_SUFFIXES)]
