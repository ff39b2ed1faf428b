"""The mess of real telemetry: 0xFFFF dropouts, empty fields, duplicate and late packets."""

from __future__ import annotations

import numpy as np

#: Fields that can arrive empty on a row (``missing_rate``).
MISSING_FIELDS: tuple[str, ...] = (
    "CellVoltage",
    "CellTemperature",
    "CellSpecificGravity",
    "AmbientTemperature",
    "InstantaneousCurrent",
)
MAX_DELAY_PACKETS = 8


def choose_rows(rows: int, rate: float, exclude: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bool mask of about ``rate * rows`` rows, never on ``exclude`` rows (rate is of all rows)."""
    eligible = ~exclude
    n_eligible = int(eligible.sum())
    if rate <= 0 or n_eligible == 0:
        return np.zeros(rows, dtype=bool)
    p = min(1.0, rate * rows / n_eligible)
    return eligible & (rng.uniform(size=rows) < p)


def missing_fields(
    rows: int, rate: float, exclude: np.ndarray, rng: np.random.Generator, fields: tuple[str, ...] = MISSING_FIELDS
) -> dict[str, np.ndarray]:
    """For each of ``fields`` (default :data:`MISSING_FIELDS`), the rows where it arrives empty (one field per row)."""
    chosen = choose_rows(rows, rate, exclude, rng)
    which = rng.integers(0, len(fields), size=rows)
    return {name: chosen & (which == i) for i, name in enumerate(fields)}


def packet_order(
    packets: int, duplicate_rate: float, out_of_order_rate: float, rng: np.random.Generator
) -> tuple[np.ndarray, int, int]:
    """Delivery order of packets: some delivered late, some sent twice.

    Returns (packet index per delivered packet, number of duplicates, number of late packets).
    A late packet arrives after 1-8 later packets; a duplicate arrives right after or up to 3
    packets after its original.
    """
    base = np.arange(packets, dtype=np.float64)
    late = rng.uniform(size=packets) < out_of_order_rate
    delay = rng.integers(1, MAX_DELAY_PACKETS + 1, size=packets) + 0.5
    keys = np.where(late, base + delay, base)
    dup = np.flatnonzero(rng.uniform(size=packets) < duplicate_rate)
    dup_keys = keys[dup] + rng.integers(0, 4, size=len(dup)) + 0.75
    all_packets = np.concatenate([np.arange(packets), dup])
    all_keys = np.concatenate([keys, dup_keys])
    order = all_packets[np.argsort(all_keys, kind="stable")]
    return order, int(len(dup)), int(late.sum())


def rows_for_packets(order: np.ndarray, cells: int) -> np.ndarray:
    """Row indices (packets hold ``cells`` consecutive rows) in delivery order."""
    return (order[:, None] * cells + np.arange(cells)[None, :]).reshape(-1)
