"""Resolve a user's ``cell_id`` argument to a canonical ``CellID``."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InputError


def resolve_cell_id(cell_id: str | int, known: Iterable[str]) -> str:
    """Accept a canonical id (``"A-3"``) or a bare cell number (``3``) when only one device has it."""
    ids = sorted(set(map(str, known)), key=_sort_key)
    text = str(cell_id).strip()
    if text in ids:
        return text
    if text.lstrip("-").isdigit() or _is_number(text):
        number = str(int(float(text)))
        matches = [i for i in ids if i.rsplit("-", 1)[-1] == number]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InputError(
                f"cell number {number} exists on {len(matches)} devices ({', '.join(matches)}): "
                "pass the canonical id '<DeviceID>-<CellNumber>'"
            )
    shown = ", ".join(ids[:40]) + (f", ... ({len(ids)} cells)" if len(ids) > 40 else "")
    raise InputError(f"unknown cell '{cell_id}': valid ids are {shown}")


def _is_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value.is_integer()


def _sort_key(cell: str) -> tuple[str, int, str]:
    device, _, number = cell.rpartition("-")
    return (device, int(number) if number.isdigit() else 0, number)
