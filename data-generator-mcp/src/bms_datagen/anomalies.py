"""Labelled anomalies injected into simulated cell readings (vectorised, on flat arrays).

Readings are flat arrays in (device, time, cell) order: ``row = (d * T + t) * N + n``.
Anomalies only touch alive cells. Types (``AnomalyType``):

- ``sensor_spike``: one reading of voltage (+/-0.15-0.45 V), temperature (+8-30 or -5-15 degC) or
  SG (+/-0.03-0.08) jumps; 10 % of spikes are physically impossible values (voltage 3.2-6 V,
  temperature 95-150 degC, SG 1.40-1.60) that the schema flags ``out_of_range``.
- ``stuck_sensor``: one measurement freezes at its value for 2-12 h (at least 3 readings) (zero variance while peers move).
- ``thermal_excursion``: cell temperature rises by 6-15 degC and falls back over 2-8 h, with the
  physical side effects (float voltage -3 mV/degC, measured SG -0.0007/degC).
- ``voltage_sag``: voltage drops 0.06-0.25 V for 1-4 readings.
- ``sg_drop``: SG drops 0.015-0.04 for 1-6 h.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ANOMALY_TYPES: tuple[str, ...] = ("sensor_spike", "stuck_sensor", "thermal_excursion", "voltage_sag", "sg_drop")
#: Share of anomaly *events* per type.
TYPE_WEIGHTS = np.array([0.35, 0.15, 0.15, 0.20, 0.15])
#: Duration range per type in hours (zero for the short types, see DURATION_STEPS).
DURATION_HOURS = np.array([[0.0, 0.0], [2.0, 12.0], [2.0, 8.0], [0.0, 0.0], [1.0, 6.0]])
#: Duration range in readings for the short types (spike: 1, sag: 1-4).
DURATION_STEPS = {0: (1, 1), 3: (1, 4)}
IMPOSSIBLE_SHARE = 0.10


@dataclass
class AnomalyResult:
    is_anomaly: np.ndarray  # bool, flat
    type_code: np.ndarray  # int8, 0 = none, i + 1 = ANOMALY_TYPES[i]
    events: int


def _durations(types: np.ndarray, dt_hours: float, rng: np.random.Generator) -> np.ndarray:
    hours = rng.uniform(DURATION_HOURS[types, 0], DURATION_HOURS[types, 1])
    steps = np.maximum(np.round(hours / dt_hours), 1).astype(np.int64)
    stuck = types == 1
    steps[stuck] = np.maximum(steps[stuck], 3)  # a frozen value needs a few readings to be a pattern
    for code, (low, high) in DURATION_STEPS.items():
        mask = types == code
        steps[mask] = rng.integers(low, high + 1, size=int(mask.sum()))
    return steps


def inject_anomalies(
    voltage: np.ndarray,
    temperature: np.ndarray,
    sg: np.ndarray,
    dead: np.ndarray,
    shape: tuple[int, int, int],
    rate: float,
    dt_hours: float,
    rng: np.random.Generator,
    has_sg: bool = True,
) -> AnomalyResult:
    """Modify ``voltage``/``temperature``/``sg`` in place; about ``rate`` of alive rows become anomalies.

    Without an SG sensor (``has_sg=False``, VRLA) there is no ``sg_drop`` and spikes / stuck
    sensors only hit voltage or temperature.
    """
    d, t, n = shape
    rows = d * t * n
    is_anomaly = np.zeros(rows, dtype=bool)
    type_code = np.zeros(rows, dtype=np.int8)
    alive_rows = int((~dead).sum())
    target = rate * alive_rows
    if target <= 0 or t == 0:
        return AnomalyResult(is_anomaly, type_code, 0)

    # Draw more events than needed, then keep the first ones until the alive rows reach the target.
    weights = TYPE_WEIGHTS if has_sg else np.where(np.arange(len(ANOMALY_TYPES)) == 4, 0.0, TYPE_WEIGHTS)
    weights = weights / weights.sum()
    mean_steps = float(weights @ np.maximum(DURATION_HOURS.mean(axis=1) / dt_hours, 1.0))
    draw = int(2 * target / max(min(mean_steps, t), 1.0)) + 10
    types = rng.choice(len(ANOMALY_TYPES), size=draw, p=weights)
    steps = np.minimum(_durations(types, dt_hours, rng), t)
    device = rng.integers(0, d, size=draw)
    cell = rng.integers(0, n, size=draw)
    start = rng.integers(0, t - steps + 1)
    channel = rng.integers(0, 3 if has_sg else 2, size=draw)  # spike / stuck: 0 voltage, 1 temperature, 2 SG
    sign = rng.choice(np.array([-1.0, 1.0]), size=draw)
    impossible = rng.uniform(size=draw) < IMPOSSIBLE_SHARE
    magnitude = rng.uniform(size=draw)

    event = np.repeat(np.arange(draw), steps)
    offset = np.arange(len(event)) - np.repeat(np.cumsum(steps) - steps, steps)
    flat = ((device[event] * t + start[event] + offset) * n + cell[event]).astype(np.int64)
    alive = ~dead[flat]
    per_event = np.bincount(event[alive], minlength=draw)
    keep_events = int(np.searchsorted(np.cumsum(per_event), target) + 1)
    keep = alive & (event < keep_events)
    event, offset, flat = event[keep], offset[keep], flat[keep]
    kind = types[event]
    u = magnitude[event]
    first_row = ((device * t + start) * n + cell)[event]

    # thermal excursion: triangular bump with physical side effects
    m = kind == 2
    frac = (offset[m] + 0.5) / steps[event[m]]
    bump = (6.0 + 9.0 * u[m]) * (1.0 - np.abs(2.0 * frac - 1.0))
    np.add.at(temperature, flat[m], bump)
    np.add.at(voltage, flat[m], -0.003 * bump)
    np.add.at(sg, flat[m], -0.0007 * bump)
    # SG drop
    m = kind == 4
    np.add.at(sg, flat[m], -(0.015 + 0.025 * u[m]))
    # voltage sag
    m = kind == 3
    np.add.at(voltage, flat[m], -(0.06 + 0.19 * u[m]))
    # stuck sensor: the value at the event's first reading, repeated
    for ch, array in enumerate((voltage, temperature, sg)):
        m = (kind == 1) & (channel[event] == ch)
        array[flat[m]] = array[first_row[m]]
    # sensor spike (last, so it shows on top of anything else)
    spike = kind == 0
    spike_impossible = spike & impossible[event]
    spike_signed = spike & ~impossible[event]
    ch = channel[event]
    s = sign[event]
    m = spike_signed & (ch == 0)
    voltage[flat[m]] += s[m] * (0.15 + 0.30 * u[m])
    m = spike_signed & (ch == 1)
    temperature[flat[m]] += np.where(s[m] > 0, 8.0 + 22.0 * u[m], -(5.0 + 10.0 * u[m]))
    m = spike_signed & (ch == 2)
    sg[flat[m]] += s[m] * (0.03 + 0.05 * u[m])
    m = spike_impossible & (ch == 0)
    voltage[flat[m]] = 3.2 + 2.8 * u[m]
    m = spike_impossible & (ch == 1)
    temperature[flat[m]] = 95.0 + 55.0 * u[m]
    m = spike_impossible & (ch == 2)
    sg[flat[m]] = 1.40 + 0.20 * u[m]

    # labels: apply in the same order as the effects so the visible one wins
    for code in (2, 4, 3, 1, 0):
        m = kind == code
        type_code[flat[m]] = code + 1
    is_anomaly[flat] = True
    return AnomalyResult(is_anomaly, type_code, keep_events)
