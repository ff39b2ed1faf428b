"""String-level packet fields (charge/discharge accounting, alarms, charger) from the fleet state.

Every function returns ``(D, T)`` arrays (one value per packet) or ``(D,)`` device constants;
the simulator repeats them on each cell row of the packet, like the real wire format.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .fleet_config import FleetConfig
from .fleet_physics import CHARGE_EFFICIENCY, CHEMISTRY, FleetState, event_value


def device_constants(config: FleetConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    d = config.devices
    start = config.start_timestamp.tz_localize(None).to_datetime64().astype("datetime64[D]")
    installed = start - rng.integers(180, 1100, size=d).astype("timedelta64[D]")
    iso = np.datetime_as_string(installed, unit="D")  # YYYY-MM-DD
    age_days = (start - installed).astype(np.int64).astype(float)
    return {
        "DeviceID": np.arange(1, d + 1, dtype=np.int64),
        "SiteID": np.array([f"CHARGER-{i}" for i in range(1, d + 1)], dtype=object),
        "BMSManufacturerID": rng.integers(15, 18, size=d).astype(np.int64),
        "SerialNumber": np.array([f"CH{v:010d}" for v in rng.integers(10**9, 10**10, size=d)], dtype=object),
        "InstallationDate": np.array([f"{s[8:10]}/{s[5:7]}/{s[0:4]}" for s in iso], dtype=object),
        "ChargerID": rng.integers(10000, 100000, size=d).astype(np.int64),
        "ChargerDeviceID": np.arange(101, d + 101, dtype=np.int64),
        "_run_hours": rng.integers(500, 9000, size=d).astype(np.int64),
        "_cycles": rng.integers(5, 120, size=d).astype(np.int64),
        "_ah_out": rng.uniform(100.0, 2000.0, size=d),
        "_load_a": rng.uniform(0.03, 0.10, size=d),
        "_energy": rng.uniform(50.0, 5000.0, size=d),
        "_age_days": age_days,
    }


def _rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over the last ``window`` steps (fewer at the start), along axis 1."""
    c = np.cumsum(x, axis=1)
    out = c.copy()
    out[:, window:] = c[:, window:] - c[:, :-window]
    counts = np.minimum(np.arange(1, x.shape[1] + 1), window)
    return out / counts[None, :]


def string_fields(
    config: FleetConfig,
    state: FleetState,
    constants: dict[str, np.ndarray],
    cell_voltage: np.ndarray,
    cell_temperature: np.ndarray,
    dropout: np.ndarray,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Per-packet fields, shape (D, T). ``cell_*`` are the readings as sent, (D, T, N) with NaN for dropouts."""
    d, t, n, dt = config.devices, config.steps, config.cells_per_device, config.dt_hours
    ev = state.events
    cap = state.devices.capacity_ah[:, None]
    current = state.current
    started = ev.started > 0
    since = np.arange(t)[None, :] - event_value(ev, ev.start_step)
    steps = event_value(ev, ev.steps)
    tau = event_value(ev, ev.tau_h)
    ah_out = event_value(ev, ev.ah_out)
    dis_a = event_value(ev, ev.current_a)
    prev = np.maximum(ev.started - 1, 0)
    prev_ah = np.take_along_axis(ev.ah_out, prev, axis=1)
    t_after = np.maximum(since - steps, 0) * dt
    decay = np.exp(-t_after / tau)
    discharging = state.discharging
    string_v = state.voltage.sum(axis=2)
    charge_a = np.maximum(current, 0.0)
    discharge_a = np.maximum(-current, 0.0)
    mean_temp = state.temperature.mean(axis=2)
    window = max(1, int(round(60.0 / config.interval_minutes)))
    mains = ~discharging
    load_a = constants["_load_a"][:, None] * cap
    ac_v = np.where(mains, rng.normal(230.0, 2.0, (d, t)), 0.0)
    ac_a = np.where(mains, string_v * (charge_a + load_a) / (np.maximum(ac_v, 1.0) * 0.9), 0.0)
    high_v = CHEMISTRY[config.chemistry].string_high_v
    cell_high_v = CHEMISTRY[config.chemistry].cell_high_v
    valid_v = np.where(dropout, np.nan, cell_voltage)
    valid_t = np.where(dropout, np.nan, cell_temperature)
    with np.errstate(invalid="ignore"):
        low_cell = np.nanmin(np.where(np.isnan(valid_v), np.inf, valid_v), axis=2) < 2.0
        high_cell = np.nanmax(np.where(np.isnan(valid_v), -np.inf, valid_v), axis=2) > cell_high_v
        hot_cell = np.nanmax(np.where(np.isnan(valid_t), -np.inf, valid_t), axis=2) > 45.0
    drop_count = dropout.sum(axis=2)
    soc = 100.0 * (1.0 - state.depth)
    string_code = np.where(string_v < 2.10 * n, 1, np.where(string_v > high_v * n, 2, 0)).astype(np.int64)
    high_current = np.abs(current) > 0.15 * cap
    hot_room = state.ambient > 35.0
    low_soc = soc < 80.0
    any_dead = state.dead.any(axis=2)
    fields: dict[str, Any] = {
        "PacketID": np.broadcast_to(np.arange(1, t + 1, dtype=np.int64), (d, t)),
        "ProblemCells": (drop_count + state.dead.sum(axis=2)).astype(np.int64),
        "StringVoltage": np.round(string_v, 2),
        "SystemPeakCurrentInChargeOneCycle": np.round(event_value(ev, ev.bulk_a) * 1.02 + 0.001 * cap, 2),
        "AverageDischargingCurrent": np.round(dis_a, 3),
        "AverageChargingCurrent": np.round(CHARGE_EFFICIENCY * ah_out / (5.0 * tau), 3),
        "AhInForOneChargeCycle": np.round(
            np.where(discharging, CHARGE_EFFICIENCY * prev_ah, CHARGE_EFFICIENCY * ah_out * (1.0 - decay)), 3
        ),
        "AhOutForOneDischargeCycle": np.round(np.where(discharging, dis_a * (since + 0.5) * dt, ah_out), 3),
        "CumulativeAHIn": np.round(
            constants["_ah_out"][:, None] * CHARGE_EFFICIENCY + np.cumsum(charge_a, axis=1) * dt, 3
        ),
        "CumulativeAHOut": np.round(constants["_ah_out"][:, None] + np.cumsum(discharge_a, axis=1) * dt, 3),
        "ChargeTimeCycle": np.where(
            discharging | ~started, np.round(5.0 * tau * 3600.0), np.round(np.minimum(t_after, 5.0 * tau) * 3600.0)
        ).astype(np.int64),
        "DischargeTimeCycle": np.round(np.where(discharging, (since + 1) * dt, steps * dt) * 3600.0).astype(np.int64),
        "TotalChargingEnergy": np.round(np.cumsum(charge_a * string_v, axis=1) * dt / 1000.0, 3),
        "TotalDischargingEnergy": np.round(np.cumsum(discharge_a * string_v, axis=1) * dt / 1000.0, 3),
        "EveryHourAvgTemp": np.round(_rolling_mean(mean_temp, window), 1),
        "CumulativeTotalAvgTempEveryHour": np.round(np.cumsum(mean_temp, axis=1) / np.arange(1, t + 1)[None, :], 1),
        "ChargeOrDischargeCycle": constants["_cycles"][:, None] + ev.started,
        "SocLatestValueForEveryCycle": np.round(soc, 1),
        "DodLatestValueForEveryCycle": np.round(100.0 * np.where(discharging, state.depth, ah_out / cap), 1),
        "SystemPeakCurrentInDischargeOneCycle": np.round(dis_a * 1.05, 3),
        "InstantaneousCurrent": np.round(current, 3),
        "AmbientTemperature": np.round(state.ambient, 1),
        "BatteryRunHours": constants["_run_hours"][:, None] + np.floor(state.hours).astype(np.int64)[None, :],
        "BMSBankDischargeCycle": discharging,
        "BMSAmbientTemperatureHN": hot_room,
        "BMSSocLN": low_soc,
        "BMSStringVoltageLNH": string_code,
        "BMSStringCurrentHN": high_current,
        "BMSBmsSedCommunication": drop_count * 2 >= n,
        "BMSCellCommunication": drop_count > 0,
        "BMSCellVoltageLN": low_cell,
        "BMSCellVoltageNH": high_cell,
        "BMSCellTemperatureHN": hot_cell,
        "BMSBuzzer": low_cell | high_cell | hot_cell | hot_room | (drop_count * 2 >= n) | any_dead,
        "ACVoltage": np.round(ac_v, 1),
        "ACCurrent": np.round(ac_a, 2),
        "Frequency": np.where(mains, np.round(rng.normal(50.0, 0.03, (d, t)), 2), 0.0),
        "Energy": np.round(constants["_energy"][:, None] + np.cumsum(ac_v * ac_a, axis=1) * dt / 1000.0, 3),
        "ChargerInputMains": mains,
        "ChargerInputPhase": mains,
        "ChargerDCVoltageOLN": np.where(discharging, 1, np.where(string_v > cell_high_v * n, 2, 0)).astype(np.int64),
        "ChargerACVoltageULN": np.where(mains, 0, 1).astype(np.int64),
        "ChargerLoad": mains,
        "ChargerTrip": np.zeros((d, t), dtype=bool),
        "ChargerOutputMccb": np.ones((d, t), dtype=bool),
        "ChargerBatteryCondition": ~any_dead,
        "ChargerTestPushButton": np.zeros((d, t), dtype=bool),
        "ChargerResetPushButton": np.zeros((d, t), dtype=bool),
        "ChargerAlarmSupplyFuse": np.ones((d, t), dtype=bool),
        "ChargerFilterFuse": np.ones((d, t), dtype=bool),
        "ChargerOutputFuse": np.ones((d, t), dtype=bool),
        "ChargerInputFuse": np.ones((d, t), dtype=bool),
        "ChargerRectifierFuse": np.ones((d, t), dtype=bool),
    }
    return fields
