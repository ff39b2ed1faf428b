"""Small synthetic lead-acid strings for forecaster unit tests (independent of the fleet simulator).

Daily ambient cycle, cell temperature following ambient with I^2R heating, float voltage with
temperature compensation, AR(1) noise and discharge events, SG tied to temperature and charge.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.signal import lfilter


def synthetic_readings(
    devices: int = 2,
    cells: int = 6,
    days: float = 8,
    interval_minutes: float = 15,
    seed: int = 0,
    missing_rate: float = 0.02,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = int(days * 24 * 60 / interval_minutes)
    times = pd.Timestamp("2025-03-01", tz="UTC") + pd.to_timedelta(np.arange(steps) * interval_minutes, unit="min")
    hour = (np.arange(steps) * interval_minutes / 60.0) % 24
    frames = []
    for d in range(devices):
        ambient = 25 + 4 * np.sin(2 * np.pi * (hour - 9) / 24) + lfilter([1], [1, -0.98], rng.normal(0, 0.05, steps))
        current = 1.0 + rng.normal(0, 0.1, steps)
        for start in rng.choice(np.arange(steps - 20), size=max(1, int(days / 3)), replace=False):
            current[start : start + rng.integers(6, 14)] = -20.0
        discharge = np.clip(-current, 0, None)
        sag = lfilter([0.3], [1, -0.7], discharge / 20.0)  # voltage sag that recovers after the event
        for c in range(cells):
            offset = rng.normal(0, 0.01)
            heat = lfilter([0.1], [1, -0.9], current**2 * 0.004)
            temp = ambient + 1.0 + rng.normal(0, 0.3) + heat + rng.normal(0, 0.08, steps)
            voltage = (
                2.24
                + offset
                - 0.003 * (temp - 25)
                - 0.12 * sag
                + lfilter([1], [1, -0.8], rng.normal(0, 0.002, steps))
                + rng.normal(0, 0.002, steps)
            )
            sg = 1.215 + offset / 2 - 0.0007 * (temp - 25) - 0.01 * sag + rng.normal(0, 0.0005, steps)
            frame = pd.DataFrame(
                {
                    "DeviceID": f"D{d + 1}",
                    "CellNumber": c + 1,
                    "Timestamp": times,
                    "CellVoltage": voltage,
                    "CellTemperature": temp,
                    "CellSpecificGravity": sg,
                    "InstantaneousCurrent": current,
                    "AmbientTemperature": ambient,
                }
            )
            for col in ("CellVoltage", "CellTemperature", "CellSpecificGravity"):
                frame.loc[rng.random(steps) < missing_rate, col] = np.nan
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)
