"""Counts the data core reports while a tool call runs, turned into one warning in the call's message.

The data core drops rows it cannot use (two different readings of one cell at one time); deep in
a loader it has no envelope to say so. :func:`count` adds to the current tool call's tally (a no-op
outside a call); the MCP layer opens the tally with :func:`collecting` around each call and puts
:func:`render`'s sentences into the message of a successful call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_CURRENT: ContextVar[dict[str, dict[str, int]] | None] = ContextVar("bms_notices", default=None)


@contextmanager
def collecting() -> Iterator[dict[str, dict[str, int]]]:
    tally: dict[str, dict[str, int]] = {}
    token = _CURRENT.set(tally)
    try:
        yield tally
    finally:
        _CURRENT.reset(token)


def count(key: str, **numbers: int) -> None:
    """Add ``numbers`` to the tally of ``key`` for the running tool call (nothing outside a call)."""
    tally = _CURRENT.get()
    if tally is None:
        return
    entry = tally.setdefault(key, {})
    for name, value in numbers.items():
        entry[name] = entry.get(name, 0) + int(value)


def render(tally: dict[str, dict[str, int]]) -> list[str]:
    """The user-facing sentences for a tally."""
    out = []
    conflicts = tally.get("conflicting_rows")
    if conflicts and conflicts.get("dropped"):
        dropped, rows = conflicts["dropped"], max(conflicts.get("rows", 0), conflicts["dropped"])
        cause = (
            f"; {conflicts['no_device']} of them have no DeviceID, so cells of different devices collide: "
            "fill in DeviceID"
            if conflicts.get("no_device")
            else ": check the cell ids (DeviceID, CellNumber) and timestamps of the input"
        )
        out.append(
            f"{dropped} of {rows} rows were dropped as conflicting readings of one cell at one time "
            f"(same cell and timestamp, different values){cause}."
        )
    return out
