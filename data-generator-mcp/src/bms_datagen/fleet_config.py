"""Parameters of a simulated fleet, validated like scikit-learn validates hyper-parameters."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.errors import InputError

#: Hard cap on generated rows (devices x cells x steps) so a typo cannot exhaust memory.
MAX_ROWS = 20_000_000
#: First and last allowed start year (every later tool must be able to store the timestamps).
START_YEARS = (1970, 2200)

#: Share of 0xFFFF dropout rows in the real sample (146 of 750 rows).
SAMPLE_DROPOUT_RATE = 146 / 750

#: Cell chemistries the simulator knows: vented (flooded) cells with SG, sealed VRLA without.
CHEMISTRIES: tuple[str, ...] = ("flooded", "vrla")


@dataclass(frozen=True)
class FleetConfig:
    """Everything that defines a simulated fleet; the same config and seed give the same data.

    Rates:
    - ``failure_rate``: share of cells that die per 30 days (a cell's chance to die within the
      span is ``1 - (1 - failure_rate) ** (days / 30)``).
    - ``anomaly_rate``: share of (alive) readings labelled as anomalies.
    - ``dropout_rate``: share of rows whose cell sensor returned 0xFFFF (voltage 65.535,
      temperature 65535, SG 59.749 together).
    - ``missing_rate``: share of rows with one empty measurement field.
    - ``duplicate_rate``: share of packets sent twice; ``out_of_order_rate``: share of packets
      delivered late (after 1-8 later packets of the stream).

    ``chemistry``: ``"flooded"`` (vented cells with a specific-gravity sensor, float 2.20-2.27 V)
    or ``"vrla"`` (sealed VRLA/AGM/gel: no ``CellSpecificGravity`` column, float 2.25-2.30 V,
    dry-out and thermal-runaway failures). ``discharge_every_days``: mean days between mains
    outages; ``0`` means no discharge at all in the span (float service only).
    ``soh_interval_hours``: spacing of the state-of-health ground-truth table (``FleetSimulation.soh``).
    """

    devices: int = 3
    cells_per_device: int = 24
    days: float = 30.0
    interval_minutes: float = 15.0
    seed: int = 0
    failure_rate: float = 0.03
    anomaly_rate: float = 0.01
    dropout_rate: float = 0.19
    missing_rate: float = 0.002
    duplicate_rate: float = 0.005
    out_of_order_rate: float = 0.01
    start: str = "2025-01-01T00:00:00Z"
    discharge_every_days: float = 4.0
    timestamp_jitter_seconds: int = 0
    chemistry: str = "flooded"
    soh_interval_hours: float = 24.0

    def __post_init__(self) -> None:
        if self.chemistry not in CHEMISTRIES:
            raise InputError(
                f"chemistry must be one of {', '.join(repr(c) for c in CHEMISTRIES)}, got {self.chemistry!r}"
            )
        _check_int("devices", self.devices, 1, 10_000)
        _check_int("cells_per_device", self.cells_per_device, 1, 1_000)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("timestamp_jitter_seconds", self.timestamp_jitter_seconds, 0, 3600)
        _check_float("days", self.days, 0.0, 3650.0, low_open=True)
        _check_float("interval_minutes", self.interval_minutes, 0.0, 1440.0, low_open=True)
        _check_float("discharge_every_days", self.discharge_every_days, 0.0, 3650.0)
        _check_float("soh_interval_hours", self.soh_interval_hours, 0.0, 8760.0, low_open=True)
        for name in (
            "failure_rate",
            "anomaly_rate",
            "dropout_rate",
            "missing_rate",
            "duplicate_rate",
            "out_of_order_rate",
        ):
            _check_float(name, getattr(self, name), 0.0, 0.9)
        if self.steps < 1:
            raise InputError(
                f"days={self.days} with interval_minutes={self.interval_minutes} gives no reading: "
                "the span must cover at least one interval"
            )
        if self.rows > MAX_ROWS:
            raise InputError(
                f"{self.devices} devices x {self.cells_per_device} cells x {self.steps} readings = {self.rows:,} rows, "
                f"more than the limit of {MAX_ROWS:,}: use fewer devices/cells/days or a longer interval_minutes"
            )
        _ = self.start_timestamp  # validates the start

    @property
    def steps(self) -> int:
        return int(np.floor(self.days * 1440.0 / self.interval_minutes + 1e-9))

    @property
    def has_sg(self) -> bool:
        """Whether the cells have a specific-gravity sensor (flooded only)."""
        return self.chemistry == "flooded"

    @property
    def has_discharges(self) -> bool:
        return self.discharge_every_days > 0

    @property
    def rows(self) -> int:
        return self.devices * self.cells_per_device * self.steps

    @property
    def dt_hours(self) -> float:
        return self.interval_minutes / 60.0

    @property
    def start_timestamp(self) -> pd.Timestamp:
        try:
            ts = pd.Timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise InputError(f"start '{self.start}' is not an ISO 8601 timestamp like 2025-01-01T00:00:00Z") from exc
        if ts is pd.NaT:
            raise InputError(f"start '{self.start}' is not an ISO 8601 timestamp like 2025-01-01T00:00:00Z")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        if not START_YEARS[0] <= ts.year <= START_YEARS[1]:
            raise InputError(
                f"start '{self.start}' is in year {ts.year}: the simulator starts between "
                f"{START_YEARS[0]} and {START_YEARS[1]} (later tools store times as 64-bit "
                "nanoseconds since 1970)"
            )
        return ts.floor("s")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    if not low <= int(value) <= high:
        raise InputError(f"{name} must be between {low} and {high}, got {value}")


def _check_float(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value > high or value < low or (low_open and value == low):
        bound = f"greater than {low}" if low_open else f"at least {low}"
        raise InputError(f"{name} must be {bound} and at most {high}, got {value}")
