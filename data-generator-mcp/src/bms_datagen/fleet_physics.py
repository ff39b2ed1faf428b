"""Vectorised physics of lead-acid strings on float service (the heart of the fleet simulator).

Shapes: ``D`` devices (one string each), ``T`` time steps, ``N`` cells per string. Device
series are ``(D, T)``, cell properties ``(D, N)``, cell readings ``(D, T, N)``. No Python loop
runs over readings; the only loops are over a handful of constant tables.

Model (all documented in the package README):
- ambient: per-site mean, daily sine cycle peaking mid-afternoon, slow AR(1) weather;
- charger: temperature-compensated float voltage (-3 mV/degC/cell), string voltage regulated, so
  a cell that deviates pushes its peers the other way; float current doubles every 10 degC;
- mains outages: discharge events (negative current, C/20-C/5 for 0.5-3 h, depth <= 60 %),
  followed by a constant-voltage recharge whose current decays exponentially and returns
  110 % of the Ah taken out;
- cells: manufacturing spread of capacity, internal resistance, full-charge SG, float voltage;
  SG falls with depth of discharge and with temperature (0.0007/degC); open-circuit voltage =
  SG + 0.84; discharge voltage = OCV - I*R - polarisation; cell temperature = ambient + rack
  position + lagged I^2 R heating;
- degradation: a configurable share of cells fails (sulfation, dry-out, internal short) with days
  of precursor drift before death and a step to the dead state at death.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fleet_config import FleetConfig

#: Every failure mode the simulator knows (``CellTable.failure_mode`` indexes this tuple).
FAILURE_MODES: tuple[str, ...] = ("sulfation", "dry_out", "internal_short", "thermal_runaway")

#: Columns of the effect tables below.
EFFECT_COLUMNS: tuple[str, ...] = ("dV", "dSG", "dT", "R", "I", "C")


#: Length of the wear-out precursor (sulfation, dry-out: from the healthy spread to end of life), days.
#: Months, not weeks: IEEE 450 (5.2) moves capacity tests to yearly once a cell shows degradation (a loss
#: of more than 10 % since the last test, or below 90 % of rated), and IEEE 1188 trends ohmic values
#: quarterly against a 20-50 % rise - schedules that only work when the last 20 % of capacity and the
#: ohmic rise take months to a year. Ruetschi (J. Power Sources 127, 2004) describes grid corrosion,
#: sulfation and water loss as slow cumulative processes.
WEAR_OUT_PRECURSOR_DAYS = [90.0, 360.0]


@dataclass(frozen=True)
class Chemistry:
    """Constants of one cell chemistry. Effect tables have one row per :data:`FAILURE_MODES` entry
    and the columns :data:`EFFECT_COLUMNS`: float-voltage shift [V], SG shift, temperature rise
    [degC] (these three scaled by the cell's severity), resistance ratio over the cell's
    installation baseline, extra string float current [share of C], capacity [share of rated].
    ``precursor_effect`` holds the values reached at end of life (the R and C columns are the
    end-of-life thresholds for the wear-out modes), ``dead_effect`` those of the failed cell."""

    name: str
    has_sg: bool
    float_nominal_v: tuple[float, float]  # charger float voltage per cell (uniform per string)
    float_window_v: tuple[float, float]  # the charger keeps the float voltage per cell inside this
    sg_nominal: tuple[float, float]  # full-charge electrolyte SG per string (internal for VRLA)
    sg_clip: tuple[float, float]
    sg_span: float  # SG drop from full to empty
    float_current_c: float  # float current at 25 degC as a share of C
    mode_shares: np.ndarray
    precursor_days: np.ndarray
    progress_exponent: np.ndarray
    #: Two-phase precursors: this share of the end-of-life drift builds slowly over the whole precursor
    #: (as ``frac ** 1.5``), the rest in the last ``fast_days`` (as ``fast ** progress_exponent``); 0 =
    #: one phase (``frac ** progress_exponent``). Thermal runaway: weeks of dry-out-like drift (float
    #: current and temperature creeping up), then the self-accelerating days.
    slow_share: np.ndarray
    fast_days: tuple[float, float]
    precursor_effect: np.ndarray
    dead_effect: np.ndarray
    string_high_v: float  # BMS "string voltage high" alarm per cell
    design_life_years: float  # years to end of life at 25 degC for an average cell
    cell_high_v: float  # BMS "cell voltage high" alarm (and charger DC over-voltage)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(m for m, share in zip(FAILURE_MODES, self.mode_shares) if share > 0)


FLOODED = Chemistry(
    name="flooded",
    has_sg=True,
    float_nominal_v=(2.23, 2.25),
    float_window_v=(2.21, 2.26),
    sg_nominal=(1.210, 1.225),
    sg_clip=(1.200, 1.240),
    sg_span=0.12,
    float_current_c=0.001,
    mode_shares=np.array([0.45, 0.35, 0.20, 0.0]),
    # wear-out (sulfation, dry-out) builds over months (WEAR_OUT_PRECURSOR_DAYS); an internal short gives
    # days of warning
    precursor_days=np.array([WEAR_OUT_PRECURSOR_DAYS, WEAR_OUT_PRECURSOR_DAYS, [1.5, 4.0], [2.0, 6.0]]),
    progress_exponent=np.array([1.5, 1.5, 1.5, 1.5]),
    slow_share=np.zeros(4),
    fast_days=(2.0, 6.0),
    precursor_effect=np.array(
        [
            # dV     dSG     dT   R     I     C
            [-0.050, -0.035, 0.6, 1.35, 0.0, 0.80],  # sulfation: SG and capacity fall (EOL: capacity 80 %)
            [+0.050, +0.012, 5.0, 1.50, 0.0, 0.85],  # dry-out: heat, high float V, acid concentrates (EOL: R +50 %)
            [-0.070, -0.030, 2.0, 1.20, 0.0, 0.95],  # internal short: self-discharge, low voltage, warm
            [-0.060, 0.000, 10.0, 1.20, 0.0, 0.95],  # (thermal runaway: VRLA only)
        ]
    ),
    dead_effect=np.array(
        [
            [-0.140, -0.075, 1.0, 4.0, 0.0, 0.50],
            [+0.120, +0.020, 12.0, 8.0, 0.0, 0.50],
            [-0.900, -0.090, 4.0, 1.5, 0.0, 0.30],
            [-0.250, 0.000, 30.0, 2.5, 0.0, 0.60],
        ]
    ),
    string_high_v=2.30,
    cell_high_v=2.35,
    design_life_years=20.0,
)

VRLA = Chemistry(
    name="vrla",
    has_sg=False,
    float_nominal_v=(2.265, 2.285),
    float_window_v=(2.25, 2.30),
    # immobilised acid is stronger: OCV = SG + 0.84 ~ 2.13-2.15 V at full charge; never measured
    sg_nominal=(1.290, 1.310),
    sg_clip=(1.280, 1.320),
    sg_span=0.16,
    float_current_c=0.0015,
    mode_shares=np.array([0.15, 0.45, 0.20, 0.20]),
    # thermal runaway: 30-120 days of slow precursor (the dry-out and heat that set it up: float current
    # and temperature creep up, IEEE 1188 / IEEE 1187), then self-accelerating in the last 2-6 days
    precursor_days=np.array([WEAR_OUT_PRECURSOR_DAYS, WEAR_OUT_PRECURSOR_DAYS, [1.5, 4.0], [30.0, 120.0]]),
    progress_exponent=np.array([1.5, 1.5, 1.5, 3.0]),
    slow_share=np.array([0.0, 0.0, 0.0, 0.3]),
    fast_days=(2.0, 6.0),
    precursor_effect=np.array(
        [
            # dV     dSG     dT    R     I       C
            [-0.050, -0.035, 0.5, 1.35, 0.0000, 0.80],  # sulfation (undercharge): low float V (EOL: capacity 80 %)
            [+0.040, +0.010, 3.0, 1.50, 0.0020, 0.85],  # dry-out: water loss -> R, float current, heat (EOL: R +50 %)
            [-0.070, -0.030, 2.0, 1.20, 0.0010, 0.90],  # internal short: low voltage, self-discharge current
            [-0.060, 0.000, 10.0, 1.20, 0.0150, 0.95],  # thermal runaway: float current and temperature together
        ]
    ),
    dead_effect=np.array(
        [
            [-0.140, -0.075, 1.0, 4.0, 0.0000, 0.50],
            [+0.100, +0.020, 6.0, 5.0, 0.0030, 0.50],
            [-0.900, -0.090, 4.0, 1.5, 0.0020, 0.30],
            [-0.250, 0.000, 30.0, 2.5, 0.0300, 0.60],
        ]
    ),
    string_high_v=2.40,
    cell_high_v=2.45,
    design_life_years=10.0,
)

CHEMISTRY: dict[str, Chemistry] = {"flooded": FLOODED, "vrla": VRLA}

#: Life halves for every this many degC above 25 degC (IEEE 450 / IEEE 1188 / IEC 60896: 8-10 degC).
ARRHENIUS_HALVING_C = 9.0
#: End of life (IEEE 450: capacity below 80 % of rated; IEEE 1188: ohmic value +50 % over baseline
#: at the upper end of its 20-50 % replacement band).
EOL_CAPACITY_SHARE = 0.80
EOL_RESISTANCE_RATIO = 1.50
#: Background wear w (0 new, 1 end of design life): resistance ratio 1 + 0.5 w, capacity 1 - 0.2 w.
WEAR_RESISTANCE = 0.5
WEAR_CAPACITY = 0.2
#: Modes whose end of life is a threshold crossing of a slow trend ("capacity", "resistance");
#: the others are sudden ("internal_short", "thermal_runaway").
EOL_CRITERION: dict[str, str] = {
    "sulfation": "capacity",
    "dry_out": "resistance",
    "internal_short": "internal_short",
    "thermal_runaway": "thermal_runaway",
}
HOURS_PER_YEAR = 8766.0


def arrhenius(temperature_c: np.ndarray | float) -> np.ndarray:
    """Ageing speed relative to 25 degC: doubles every :data:`ARRHENIUS_HALVING_C` degC."""
    return np.power(2.0, (np.asarray(temperature_c, dtype=float) - 25.0) / ARRHENIUS_HALVING_C)


def state_of_health(capacity_pct: np.ndarray, resistance_ratio: np.ndarray) -> np.ndarray:
    """One SOH in percent that reaches 80 at either end-of-life criterion: capacity 80 % of rated
    or resistance +50 % over baseline (the ratio is mapped linearly, 1.0 -> 100, 1.5 -> 80), within 0-100."""
    return np.clip(np.minimum(capacity_pct, 100.0 - 40.0 * (resistance_ratio - 1.0)), 0.0, 100.0)


SG_PER_DEGC = 0.0007  # measured SG falls this much per degC above 25 degC
OCV_OFFSET = 0.84  # OCV ~= SG + 0.84 V
SG_SPAN_FULL_TO_EMPTY = FLOODED.sg_span  # SG drop from full charge to fully discharged (flooded)
FLOAT_TEMP_COMP = 0.003  # charger float compensation, V per degC per cell
CHARGE_EFFICIENCY = 1.10  # Ah returned per Ah discharged


@dataclass
class CellTable:
    """Per-cell properties and fate, shape ``(D, N)``."""

    capacity_ah: np.ndarray
    resistance_ohm: np.ndarray
    sg_full: np.ndarray
    float_offset_v: np.ndarray
    position_temp_c: np.ndarray
    thermal_k_per_w: np.ndarray
    failure_mode: np.ndarray  # -1 healthy, else index into FAILURE_MODES
    onset_h: np.ndarray  # start of precursor drift (inf for healthy cells)
    death_h: np.ndarray  # death time (inf for healthy cells)
    severity: np.ndarray
    initial_share: np.ndarray  # capacity at manufacture / rated capacity of the string
    wear0: np.ndarray  # background wear at the start of the data (from the string's age)
    wear_rate: np.ndarray  # wear per Arrhenius-hour (cell-to-cell spread of ageing speed)
    wear_max: np.ndarray  # background wear is capped here so a cell not chosen to fail stays above EOL
    drift_v_per_h: np.ndarray  # slow float-voltage drift of the cell [V/h]
    design_life_h: float = 1.0


@dataclass
class DeviceTable:
    capacity_ah: np.ndarray  # (D,)
    float_nominal_v: np.ndarray  # (D,)
    ambient_mean_c: np.ndarray
    ambient_amp_c: np.ndarray


@dataclass
class Events:
    """Discharge events per device, index 0 is a completed pre-history cycle. Shape ``(D, K+1)``."""

    start_step: np.ndarray
    steps: np.ndarray
    current_a: np.ndarray  # discharge current magnitude
    ah_out: np.ndarray
    bulk_a: np.ndarray  # recharge peak current
    tau_h: np.ndarray  # recharge time constant
    started: np.ndarray  # (D, T) number of events started so far (0 = none in span)


@dataclass
class FleetState:
    """Everything the packet writer needs."""

    hours: np.ndarray  # (T,)
    ambient: np.ndarray  # (D, T)
    current: np.ndarray  # (D, T)
    depth: np.ndarray  # (D, T) depth of discharge now, 0..1
    discharging: np.ndarray  # (D, T) bool
    recharging: np.ndarray  # (D, T) bool
    voltage: np.ndarray  # (D, T, N)
    temperature: np.ndarray  # (D, T, N)
    sg: np.ndarray  # (D, T, N)
    dead: np.ndarray  # (D, T, N) bool
    devices: DeviceTable
    cells: CellTable
    events: Events
    capacity_pct: np.ndarray | None = None  # (D, T, N) ground truth: capacity in % of rated
    resistance_ratio: np.ndarray | None = None  # (D, T, N) ground truth: resistance over installation baseline


def make_devices(config: FleetConfig, rng: np.random.Generator) -> DeviceTable:
    d = config.devices
    return DeviceTable(
        capacity_ah=rng.choice(np.array([100.0, 150.0, 200.0, 300.0, 400.0]), size=d),
        float_nominal_v=rng.uniform(*CHEMISTRY[config.chemistry].float_nominal_v, size=d),
        ambient_mean_c=rng.uniform(20.0, 30.0, size=d),
        ambient_amp_c=rng.uniform(1.5, 4.0, size=d),
    )


def make_cells(
    config: FleetConfig,
    devices: DeviceTable,
    rng: np.random.Generator,
    ageing: np.random.Generator | None = None,
    age_days: np.ndarray | None = None,
) -> CellTable:
    d, n = config.devices, config.cells_per_device
    ageing = ageing if ageing is not None else np.random.default_rng(config.seed)
    age_days = np.zeros(d) if age_days is None else np.asarray(age_days, dtype=float)
    cap_dev = devices.capacity_ah[:, None]
    position = (np.arange(n) + 0.5) / n
    chem = CHEMISTRY[config.chemistry]
    sg_nominal = rng.uniform(*chem.sg_nominal, size=(d, 1))
    cells = CellTable(
        capacity_ah=cap_dev * (1.0 + np.clip(rng.normal(0.0, 0.03, (d, n)), -0.08, 0.08)),
        resistance_ohm=(0.15 / cap_dev) * rng.lognormal(0.0, 0.12, (d, n)),
        sg_full=np.clip(rng.normal(sg_nominal, 0.006, (d, n)), *chem.sg_clip),
        float_offset_v=np.clip(rng.normal(0.0, 0.008, (d, n)), -0.02, 0.02),
        position_temp_c=0.8 * np.sin(np.pi * position)[None, :] - 0.4 + rng.normal(0.0, 0.2, (d, n)),
        thermal_k_per_w=(600.0 / cap_dev) * rng.uniform(0.8, 1.2, (d, n)),
        failure_mode=np.full((d, n), -1, dtype=np.int64),
        onset_h=np.full((d, n), np.inf),
        death_h=np.full((d, n), np.inf),
        severity=rng.uniform(0.8, 1.2, (d, n)),
        initial_share=np.ones((d, n)),
        wear0=np.zeros((d, n)),
        wear_rate=np.zeros((d, n)),
        wear_max=np.ones((d, n)),
        drift_v_per_h=np.zeros((d, n)),
    )
    chem = CHEMISTRY[config.chemistry]
    cells.initial_share = cells.capacity_ah / cap_dev
    speed = ageing.lognormal(0.0, 0.3, (d, n))  # cell-to-cell spread of ageing speed
    life_h = chem.design_life_years * HOURS_PER_YEAR
    site = arrhenius(devices.ambient_mean_c[:, None] + cells.position_temp_c)
    cells.wear_rate = speed / life_h
    cells.design_life_h = life_h
    cells.wear_max = np.minimum(
        (1.0 - (EOL_CAPACITY_SHARE + 0.01) / cells.initial_share) / WEAR_CAPACITY,
        (EOL_RESISTANCE_RATIO - 0.02 - 1.0) / WEAR_RESISTANCE,
    )
    cells.wear0 = np.minimum(age_days[:, None] * 24.0 * site * cells.wear_rate, 0.8 * cells.wear_max)
    # float voltage drifts apart slowly (sd 1 mV per 30 days), faster in worn cells
    cells.drift_v_per_h = ageing.normal(0.0, 0.001 / 720.0, (d, n)) * (1.0 + 2.0 * cells.wear0)
    _assign_failures(config, cells, rng, weights=(site * speed).reshape(-1))
    return cells


def failure_probability(config: FleetConfig) -> float:
    """Chance that a cell dies within the span: ``failure_rate`` is per 30 days."""
    return float(1.0 - (1.0 - config.failure_rate) ** (config.days / 30.0))


def _assign_failures(
    config: FleetConfig, cells: CellTable, rng: np.random.Generator, weights: np.ndarray | None = None
) -> None:
    """Choose the failing cells (more likely where ageing is faster: hot sites, fast-ageing cells)."""
    total = config.devices * config.cells_per_device
    expected = failure_probability(config) * total
    n_fail = min(total, int(np.floor(expected + rng.uniform())))  # stochastic rounding: exact on average
    p = None if weights is None else weights / weights.sum()
    chosen = rng.choice(total, size=n_fail, replace=False, p=p)
    span_h = config.steps * config.dt_hours
    chem = CHEMISTRY[config.chemistry]
    modes = rng.choice(len(FAILURE_MODES), size=n_fail, p=chem.mode_shares)
    death = span_h * rng.uniform(0.2, 0.98, size=n_fail)
    low, high = chem.precursor_days[modes, 0], chem.precursor_days[modes, 1]
    # the drift may have started before the data, but at most as long before as the death is after
    # the start, so at least half of it is observed
    precursor = np.minimum(rng.uniform(low, high) * 24.0, 2.0 * death)
    cells.failure_mode.reshape(-1)[chosen] = modes
    cells.death_h.reshape(-1)[chosen] = death
    cells.onset_h.reshape(-1)[chosen] = death - precursor


def first_order_filter(b0: float, a1: float, x: np.ndarray, axis: int) -> np.ndarray:
    """``scipy.signal.lfilter([b0], [1.0, a1], x, axis=axis)`` bit for bit (the same transposed direct form:
    ``y[n] = z + b0 * x[n]``, ``z = x[n] * 0.0 - y[n] * a1``), without importing ``scipy.signal`` (about
    0.7 CPU-s of every simulating process's start, for a one-pole filter); one NumPy step per time step."""
    xm = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    y = np.empty_like(xm)
    z = np.zeros(xm.shape[1:])
    for n in range(xm.shape[0]):
        yn = z + b0 * xm[n]
        z = xm[n] * 0.0 - yn * a1
        y[n] = yn
    return np.moveaxis(y, 0, axis)


def ambient_series(
    config: FleetConfig, devices: DeviceTable, hours: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    d, t = config.devices, len(hours)
    start = config.start_timestamp
    hour_of_day = (start.hour + start.minute / 60.0 + hours) % 24.0
    daily = np.sin(2.0 * np.pi * (hour_of_day - 9.0) / 24.0)  # peak at 15:00
    phi = float(np.exp(-config.dt_hours / 24.0))
    sigma = 1.5
    shocks = rng.normal(0.0, sigma * np.sqrt(1.0 - phi**2), (d, t))
    shocks[:, 0] = rng.normal(0.0, sigma, d)
    weather = first_order_filter(1.0, -phi, shocks, axis=1)
    return (
        devices.ambient_mean_c[:, None]
        + devices.ambient_amp_c[:, None] * daily[None, :]
        + weather
        + rng.normal(0.0, 0.1, (d, t))
    )


def discharge_events(config: FleetConfig, devices: DeviceTable, rng: np.random.Generator) -> Events:
    d, t, dt = config.devices, config.steps, config.dt_hours
    # no discharge at all: one placeholder event that never starts (keeps the shapes)
    every_days = config.discharge_every_days if config.has_discharges else 1.0
    k = int(np.ceil(config.days / every_days * 3.0)) + 3 if config.has_discharges else 1
    cap = devices.capacity_ah[:, None]
    steps = np.maximum(1, np.round(rng.uniform(0.5, 3.0, (d, k)) / dt)).astype(np.int64)
    dur_h = steps * dt
    current = cap * rng.uniform(0.05, 0.20, (d, k))
    current = np.minimum(current, 0.6 * cap / dur_h)
    ah_out = current * dur_h
    tau = np.maximum(0.5, CHARGE_EFFICIENCY * ah_out / (cap * rng.uniform(0.10, 0.15, (d, k))))
    bulk = CHARGE_EFFICIENCY * ah_out / tau
    gaps = dur_h + 5.0 * tau + rng.exponential(every_days * 24.0, (d, k))
    first = rng.exponential(every_days * 24.0, (d, 1))
    start_h = first + np.concatenate([np.zeros((d, 1)), np.cumsum(gaps[:, :-1], axis=1)], axis=1)
    start_step = np.ceil(start_h / dt - 1e-9).astype(np.int64)
    if not config.has_discharges:
        start_step[:] = t
    valid = start_step < t
    marks = np.zeros((d, t), dtype=np.int64)
    rows, cols = np.nonzero(valid)
    marks[rows, start_step[rows, cols]] = 1
    started = np.cumsum(marks, axis=1)
    # pre-history cycle (index 0): long finished, its figures feed the "last cycle" columns
    hist_current = cap[:, 0] * rng.uniform(0.05, 0.15, d)
    hist_steps = np.maximum(1, np.round(rng.uniform(0.5, 3.0, d) / dt)).astype(np.int64)
    hist_ah = np.minimum(hist_current * hist_steps * dt, 0.6 * cap[:, 0])
    hist_tau = np.maximum(0.5, CHARGE_EFFICIENCY * hist_ah / (cap[:, 0] * 0.12))
    return Events(
        start_step=np.concatenate([np.full((d, 1), -(10**9), dtype=np.int64), start_step], axis=1),
        steps=np.concatenate([hist_steps[:, None], steps], axis=1),
        current_a=np.concatenate([hist_current[:, None], current], axis=1),
        ah_out=np.concatenate([hist_ah[:, None], ah_out], axis=1),
        bulk_a=np.concatenate([(CHARGE_EFFICIENCY * hist_ah / hist_tau)[:, None], bulk], axis=1),
        tau_h=np.concatenate([hist_tau[:, None], tau], axis=1),
        started=started,
    )


def event_value(events: Events, array: np.ndarray) -> np.ndarray:
    """``array`` (D, K+1) looked up at each step's current event, giving (D, T)."""
    return np.take_along_axis(array, events.started, axis=1)


@dataclass
class Degradation:
    """Per-reading effects of ageing and failure, shapes (D, T, N) (``extra_current``: (D, T))."""

    d_v: np.ndarray
    d_sg: np.ndarray
    d_t: np.ndarray
    r_mult: np.ndarray  # resistance ratio over the installation baseline
    cap_mult: np.ndarray  # capacity as a share of the cell's capacity at manufacture
    dead: np.ndarray
    extra_current: np.ndarray  # extra string float current [A] drawn by the failing cells
    capacity_pct: np.ndarray  # capacity in % of the string's rated capacity (ground truth)


def _arrhenius_clock(ambient: np.ndarray, hours: np.ndarray, dt: float) -> np.ndarray:
    """Cumulative Arrhenius-weighted hours since the start, per device, (D, T); 0 at the first step."""
    rate = arrhenius(ambient)
    clock = np.cumsum(rate, axis=1) * dt
    return clock - rate[:, :1] * dt


def _clock_at(clock: np.ndarray, ambient: np.ndarray, hours: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The device clock at arbitrary hours ``query`` (D, N); extrapolated linearly outside the data."""
    out = np.empty_like(query, dtype=float)
    first, last = arrhenius(ambient[:, 0]), arrhenius(ambient[:, -1])
    for dev in range(query.shape[0]):  # one np.interp per device (devices are few)
        q = np.where(np.isfinite(query[dev]), query[dev], 0.0)
        inside = np.interp(q, hours, clock[dev])
        below = q * first[dev]
        above = clock[dev, -1] + (q - hours[-1]) * last[dev]
        out[dev] = np.where(q < hours[0], below, np.where(q > hours[-1], above, inside))
    return out


def degradation(
    cells: CellTable, hours: np.ndarray, chem: Chemistry, capacity_ah: np.ndarray, ambient: np.ndarray | None = None
) -> Degradation:
    """Ageing of every cell and precursor drift / dead state of the failing ones.

    ``capacity_ah`` is the string's rated capacity (D,), ``ambient`` its temperature (D, T)
    driving the Arrhenius clock (25 degC everywhere when not given).
    """
    d, n = cells.capacity_ah.shape
    t = len(hours)
    dt = float(hours[1] - hours[0]) if t > 1 else 1.0
    ambient = np.full((d, t), 25.0) if ambient is None else ambient
    clock = _arrhenius_clock(ambient, hours, dt)  # (D, T)
    cell_speed = arrhenius(25.0 + cells.position_temp_c)  # rack position: warmer cells age faster
    # background wear of every cell (Arrhenius-accelerated), capped below end of life
    wear = np.minimum(
        cells.wear0[:, None, :] + cells.wear_rate[:, None, :] * cell_speed[:, None, :] * clock[:, :, None],
        cells.wear_max[:, None, :],
    )
    r_bg = 1.0 + WEAR_RESISTANCE * wear
    c_bg = 1.0 - WEAR_CAPACITY * wear

    failing = np.isfinite(cells.death_h)
    mode = np.where(failing, cells.failure_mode, 0)
    h = hours[None, :, None]
    onset_clock = _clock_at(clock, ambient, hours, cells.onset_h)  # (D, N)
    death_clock = _clock_at(clock, ambient, hours, cells.death_h)
    with np.errstate(invalid="ignore", divide="ignore"):
        # progress of the failure on the Arrhenius clock: a hot spell brings the end closer
        frac = np.clip(
            (clock[:, :, None] - onset_clock[:, None, :]) / (death_clock - onset_clock)[:, None, :], 0.0, 1.0
        )
        progress = frac ** chem.progress_exponent[mode][:, None, :]
        slow = chem.slow_share[mode]  # (D, N)
        if (slow[failing] > 0).any():
            # two phases: a slow drift over the whole precursor, the rest in the last fast_days (per cell,
            # from its severity, so no random stream shifts); both on the Arrhenius clock
            low, high = chem.fast_days
            fast_h = 24.0 * (low + (high - low) * np.clip((cells.severity - 0.8) / 0.4, 0.0, 1.0))
            fast_share = np.clip(fast_h / np.maximum(cells.death_h - cells.onset_h, 1e-9), 0.0, 1.0)
            fast = np.clip((frac - (1.0 - fast_share[:, None, :])) / fast_share[:, None, :], 0.0, 1.0)
            two = (
                slow[:, None, :] * frac**1.5
                + (1.0 - slow[:, None, :]) * fast ** chem.progress_exponent[mode][:, None, :]
            )
            progress = np.where((slow > 0)[:, None, :], two, progress)
    progress = np.where(failing[:, None, :], progress, 0.0)
    dead = h >= cells.death_h[:, None, :]

    pre = chem.precursor_effect[mode] * cells.severity[..., None]  # (D, N, 6)
    post = chem.dead_effect[mode] * cells.severity[..., None]
    visible = []
    for j in (0, 1, 2, 4):  # dV, dSG, dT, I: drift towards the end-of-life value, then the dead state
        pre_j = pre[..., j][:, None, :] * progress
        value = np.where(dead, np.broadcast_to(post[..., j][:, None, :], pre_j.shape), pre_j)
        visible.append(np.where(failing[:, None, :], value, 0.0))
    d_v, d_sg, d_t, extra_share = visible
    d_v = d_v + cells.drift_v_per_h[:, None, :] * h
    if chem.has_sg:  # sulfate that no longer recharges: a slow SG decline with age
        d_sg = d_sg - 0.02 * (wear - cells.wear0[:, None, :])

    # resistance and capacity: the background trend plus the failure's own trend, reaching the
    # end-of-life threshold of the mode exactly at death
    death_wear = np.minimum(cells.wear0 + cells.wear_rate * cell_speed * np.maximum(death_clock, 0.0), cells.wear_max)
    r_bg_death = 1.0 + WEAR_RESISTANCE * death_wear
    c_bg_death = 1.0 - WEAR_CAPACITY * death_wear
    r_eol = np.maximum(chem.precursor_effect[mode][..., 3], r_bg_death)
    c_eol = np.minimum(chem.precursor_effect[mode][..., 5] / cells.initial_share, c_bg_death)
    ratio = r_bg + ((r_eol - r_bg_death)[:, None, :] * progress)
    cap = c_bg - ((c_bg_death - c_eol)[:, None, :] * progress)
    r_dead = np.maximum(chem.dead_effect[mode][..., 3], r_eol)
    c_dead = np.minimum(chem.dead_effect[mode][..., 5] / cells.initial_share, c_eol)
    dead_f = dead & failing[:, None, :]
    ratio = np.where(dead_f, r_dead[:, None, :], ratio)
    cap = np.where(dead_f, c_dead[:, None, :], cap)

    extra_current = extra_share.sum(axis=2) * capacity_ah[:, None]
    return Degradation(
        d_v=d_v,
        d_sg=d_sg,
        d_t=d_t,
        r_mult=ratio,
        cap_mult=cap,
        dead=dead,
        extra_current=extra_current,
        capacity_pct=100.0 * cells.initial_share[:, None, :] * cap,
    )


def simulate_state(
    config: FleetConfig, rngs: dict[str, np.random.Generator], age_days: np.ndarray | None = None
) -> FleetState:
    """Run the physics for the whole fleet; returns noise-free-ish true readings (with sensor noise)."""
    d, t, n, dt = config.devices, config.steps, config.cells_per_device, config.dt_hours
    chem = CHEMISTRY[config.chemistry]
    hours = np.arange(t) * dt
    devices = make_devices(config, rngs["devices"])
    cells = make_cells(config, devices, rngs["cells"], rngs.get("ageing"), age_days)
    ambient = ambient_series(config, devices, hours, rngs["ambient"])
    events = discharge_events(config, devices, rngs["events"])
    noise = rngs["noise"]

    since = np.arange(t)[None, :] - event_value(events, events.start_step)
    ev_steps = event_value(events, events.steps)
    discharging = (events.started > 0) & (since < ev_steps)
    t_after = np.maximum(since - ev_steps, 0) * dt
    tau = event_value(events, events.tau_h)
    decay = np.exp(-t_after / tau)
    deficit = np.where(
        discharging,
        event_value(events, events.current_a) * (since + 0.5) * dt,
        event_value(events, events.ah_out) * decay,
    )
    cap = devices.capacity_ah[:, None]
    depth = np.clip(deficit / cap, 0.0, 1.0)
    recharging = (~discharging) & (events.started > 0) & (t_after < 5.0 * tau)
    deg = degradation(cells, hours, chem, devices.capacity_ah, ambient)
    d_v, d_sg, d_t, r_mult, dead = deg.d_v, deg.d_sg, deg.d_t, deg.r_mult, deg.dead
    float_current = chem.float_current_c * cap * 2.0 ** ((ambient - 25.0) / 10.0)
    if deg.extra_current.any():  # failing cells draw more float current (dry-out, thermal runaway)
        float_current = float_current + deg.extra_current
    current = np.where(
        discharging,
        -event_value(events, events.current_a) * (1.0 + noise.normal(0.0, 0.02, (d, t))),
        event_value(events, events.bulk_a) * decay * (events.started > 0)
        + float_current
        + noise.normal(0.0, 0.02 * cap / 100.0, (d, t)),
    )
    # depth of discharge per cell: a cell that lost capacity goes deeper for the same Ah
    cell_depth = np.clip(deficit[:, :, None] / (cap[:, :, None] * deg.cap_mult), 0.0, 1.0)
    resistance = cells.resistance_ohm[:, None, :] * r_mult
    heat_w = current[:, :, None] ** 2 * resistance
    alpha = 1.0 - np.exp(-dt / 2.0)  # 2 h thermal time constant
    heat_lagged = first_order_filter(alpha, alpha - 1.0, heat_w, axis=1)
    temperature = (
        ambient[:, :, None]
        + cells.position_temp_c[:, None, :]
        + cells.thermal_k_per_w[:, None, :] * heat_lagged
        + d_t
        + noise.normal(0.0, 0.15, (d, t, n))
    )

    sg25 = cells.sg_full[:, None, :] - chem.sg_span * cell_depth + d_sg
    sg = sg25 - SG_PER_DEGC * (temperature - 25.0) + noise.normal(0.0, 0.0012, (d, t, n))

    float_v = np.clip(devices.float_nominal_v[:, None] - FLOAT_TEMP_COMP * (ambient - 25.0), *chem.float_window_v)
    raw_float = float_v[:, :, None] + cells.float_offset_v[:, None, :] + d_v
    if n > 1:  # the charger regulates the string: deviations of one cell push the others
        raw_float += (n * float_v - raw_float.sum(axis=2))[:, :, None] / n
    recharge_v = raw_float + 0.08 * decay[:, :, None] - 0.25 * cell_depth
    amps = np.abs(current)[:, :, None]
    polarisation = 0.6 * amps / (cells.capacity_ah[:, None, :] * deg.cap_mult) * (1.0 + 0.5 * (r_mult - 1.0))
    discharge_v = sg25 + OCV_OFFSET + d_v - amps * resistance - polarisation
    voltage = np.where(discharging[:, :, None], discharge_v, np.where(recharging[:, :, None], recharge_v, raw_float))
    voltage = np.maximum(voltage + noise.normal(0.0, 0.002, (d, t, n)), 0.02)

    return FleetState(
        hours=hours,
        ambient=ambient,
        current=current,
        depth=depth,
        discharging=discharging,
        recharging=recharging,
        voltage=voltage,
        temperature=temperature,
        sg=sg,
        dead=dead,
        devices=devices,
        cells=cells,
        events=events,
        capacity_pct=deg.capacity_pct,
        resistance_ratio=deg.r_mult,
    )
