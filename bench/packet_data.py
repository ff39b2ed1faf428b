"""Build a large raw-packet CSV by repeating the real sample forward in time (for benchmarks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "bms_packet_sample.csv"


def build_packet_csv(rows: int, path: Path) -> Path:
    """Write ``rows`` raw packet rows: the 750-row sample tiled, each copy shifted later in time."""
    if path.exists():
        return path
    sample = pd.read_csv(SAMPLE)
    copies = int(np.ceil(rows / len(sample)))
    ts = pd.to_datetime(sample["PacketDateTime"])
    span = (ts.max() - ts.min()) + pd.Timedelta(minutes=1)
    frame = pd.concat([sample] * copies, ignore_index=True).iloc[:rows]
    offsets = np.repeat(np.arange(copies), len(sample))[:rows] * span
    shifted = pd.to_datetime(frame["PacketDateTime"]) + pd.to_timedelta(offsets)
    frame["PacketDateTime"] = shifted.dt.strftime("%Y-%m-%dT%H:%M:%S")
    frame["Date"] = shifted.dt.strftime("%d/%m/%Y")
    frame["Time"] = shifted.dt.strftime("%H:%M:%S")
    frame["PacketID"] = np.repeat(np.arange(copies), len(sample))[:rows] * 100 + frame["PacketID"].to_numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
