"""A small, fast synthetic fleet with known deaths, for unit tests of the failure model.

Independent of the project simulator (``bms_datagen``) so the feature and model logic can
be tested on exactly known degradation: failing cells drift from their string peers for
``ramp_days`` before they die (sulfation: SG and voltage drop; dry-out: temperature rise;
internal short: voltage collapse), then read ~1 V with ``IsDead = 1``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_fleet(
    devices: int = 4,
    cells_per_device: int = 12,
    days: float = 60.0,
    interval_minutes: float = 60.0,
    failing_fraction: float = 0.25,
    ramp_days: float | tuple[float, float] = 12.0,
    seed: int = 0,
    start: str = "2026-01-01",
    with_sg: bool = True,
    discharges: bool = True,
) -> pd.DataFrame:
    """``ramp_days``: precursor length (a range gives each failing cell its own, uniform in it);
    ``with_sg=False`` drops the SG column (VRLA); ``discharges=False`` keeps the string on float."""
    rng = np.random.default_rng(seed)
    n_cells = devices * cells_per_device
    times = pd.date_range(
        start, periods=int(days * 24 * 60 / interval_minutes), freq=f"{interval_minutes}min", tz="UTC"
    )
    n_t = len(times)
    hours = (times - times[0]).total_seconds().to_numpy() / 3600.0
    ambient_t = 25.0 + 3.0 * np.sin(2 * np.pi * hours / 24.0)
    discharge = ((hours % 240.0) >= 100.0) & ((hours % 240.0) < 102.0)
    current_t = np.where(discharge & discharges, -20.0, 0.4)

    failing = rng.random(n_cells) < failing_fraction
    low, high = (ramp_days, ramp_days) if np.isscalar(ramp_days) else ramp_days  # type: ignore[misc]
    death_h = np.where(failing, rng.uniform(float(high) * 24 + 24, hours[-1] + 10 * 24, n_cells), np.inf)
    mode = rng.integers(0, 3, n_cells)
    ramp_h = 24.0 * rng.uniform(0.8 * float(low), 1.2 * float(high), n_cells)

    h = hours[None, :]
    progress = np.clip((h - (death_h - ramp_h)[:, None]) / ramp_h[:, None], 0.0, 1.0)
    dead = h >= death_h[:, None]
    base_v = 2.23 + rng.normal(0, 0.006, n_cells)[:, None]
    base_sg = 1.215 + rng.normal(0, 0.003, n_cells)[:, None]
    resistance = 0.004 + rng.normal(0, 0.0003, n_cells)[:, None]
    # Sulfation and dry-out raise the ohmic resistance (x2 at death, IEEE 1188's trend).
    resistance = resistance * (1.0 + np.where((mode <= 1)[:, None], progress, 0.0))
    v = base_v + rng.normal(0, 0.004, (n_cells, n_t)) + current_t[None, :] * resistance
    sg = base_sg + rng.normal(0, 0.0015, (n_cells, n_t))
    temp = ambient_t[None, :] + 1.0 + rng.normal(0, 0.3, (n_cells, n_t))
    sulf = (mode == 0)[:, None]
    dry = (mode == 1)[:, None]
    short = (mode == 2)[:, None]
    v = v - np.where(sulf, 0.10 * progress, 0.0) - np.where(short, 0.25 * progress**2, 0.0)
    sg = sg - np.where(sulf, 0.05 * progress, 0.0)
    temp = temp + np.where(dry, 9.0 * progress, 0.0)
    v = np.where(dead, 1.0 + rng.normal(0, 0.02, (n_cells, n_t)), v)

    device = np.repeat([f"D{d + 1}" for d in range(devices)], cells_per_device)
    number = np.tile(np.arange(1, cells_per_device + 1), devices)
    frame = pd.DataFrame(
        {
            "DeviceID": np.repeat(device, n_t),
            "CellNumber": np.repeat(number, n_t),
            "Timestamp": np.tile(times, n_cells),
            "CellVoltage": v.ravel(),
            "CellTemperature": temp.ravel(),
            "CellSpecificGravity": sg.ravel(),
            "InstantaneousCurrent": np.tile(current_t, n_cells),
            "AmbientTemperature": np.tile(ambient_t, n_cells),
            "IsDead": dead.ravel().astype(np.int8),
        }
    )
    frame = frame if with_sg else frame.drop(columns="CellSpecificGravity")
    # Ground truth, also for cells that die after the end of the data: {CellID: hours from start or None}.
    frame.attrs["death_hours"] = {
        f"{d}-{c}": (float(h) if np.isfinite(h) else None) for d, c, h in zip(device, number, death_h)
    }
    return frame


def canonical_fleet(**kwargs) -> pd.DataFrame:
    from bms_schema import normalize, sort_readings

    raw = synthetic_fleet(**kwargs)
    frame, _ = normalize(raw)
    frame = sort_readings(frame)
    frame.attrs["death_hours"] = raw.attrs["death_hours"]
    return frame
