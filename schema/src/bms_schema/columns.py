"""The canonical BMS readings table: column names, units, dtypes, aliases, limits.

One row per (cell, timestamp). A cell is identified per device: ``CellID`` is
``"<DeviceID>-<CellNumber>"`` (cell 3 of device A is ``"A-3"``, not cell 3 of device B).

| column | unit | dtype | meaning |
|---|---|---|---|
| ``CellID`` | - | string | canonical cell id ``"<DeviceID>-<CellNumber>"`` |
| ``DeviceID`` | - | string | BMS device (one battery string) |
| ``CellNumber`` | - | int64 | position of the cell in its string (1-based) |
| ``Timestamp`` | UTC | datetime64[ns, UTC] | time of the reading |
| ``CellVoltage`` | V | float64 | cell terminal voltage |
| ``CellTemperature`` | degC | float64 | cell (post/case) temperature |
| ``CellSpecificGravity`` | - | float64 | electrolyte specific gravity |
| ``InstantaneousCurrent`` | A | float64 | string current, negative while discharging |
| ``AmbientTemperature`` | degC | float64 | room temperature |
| ``StringVoltage`` | V | float64 | string voltage (optional) |
| ``<core>_Quality`` | - | category | ``ok``/``missing``/``sentinel``/``out_of_range`` per core column |
| ``SensorFault`` | - | bool | any core value was a 0xFFFF register sentinel |
| ``OutOfRange`` | - | bool | any core value was physically impossible |

Labels (``IsDead``, ``IsAnomaly``, ``AnomalyType``) and every column the schema does not
know pass through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCHEMA_VERSION = "1.0"

CELL_ID = "CellID"
DEVICE_ID = "DeviceID"
CELL_NUMBER = "CellNumber"
TIMESTAMP = "Timestamp"

VOLTAGE = "CellVoltage"
TEMPERATURE = "CellTemperature"
SPECIFIC_GRAVITY = "CellSpecificGravity"
CURRENT = "InstantaneousCurrent"
AMBIENT = "AmbientTemperature"
STRING_VOLTAGE = "StringVoltage"

#: The five core measurements: always columns of the canonical table (NaN where not measured).
CORE_COLUMNS: tuple[str, ...] = (VOLTAGE, TEMPERATURE, SPECIFIC_GRAVITY, CURRENT, AMBIENT)
#: Core measurements an input must have; the others may be absent (VRLA/AGM/gel cells have no
#: specific gravity; not every BMS measures the current or the room temperature).
REQUIRED_MEASUREMENTS: tuple[str, ...] = (VOLTAGE, TEMPERATURE)
OPTIONAL_MEASUREMENTS: tuple[str, ...] = (SPECIFIC_GRAVITY, CURRENT, AMBIENT)
#: Measurements used when present.
OPTIONAL_NUMERIC: tuple[str, ...] = (STRING_VOLTAGE,)
ID_COLUMNS: tuple[str, ...] = (CELL_ID, DEVICE_ID, CELL_NUMBER, TIMESTAMP)

LABEL_COLUMNS: tuple[str, ...] = ("IsDead", "IsAnomaly", "AnomalyType")

SENSOR_FAULT = "SensorFault"
OUT_OF_RANGE = "OutOfRange"
QUALITY_SUFFIX = "_Quality"

QUALITY_OK = "ok"
QUALITY_MISSING = "missing"
QUALITY_SENTINEL = "sentinel"
QUALITY_OUT_OF_RANGE = "out_of_range"
#: Quality codes in order (stored as a pandas Categorical; CSV round trips give the strings).
QUALITY_LEVELS: tuple[str, ...] = (QUALITY_OK, QUALITY_MISSING, QUALITY_SENTINEL, QUALITY_OUT_OF_RANGE)

UNITS: dict[str, str] = {
    VOLTAGE: "V",
    TEMPERATURE: "degC",
    SPECIFIC_GRAVITY: "",
    CURRENT: "A",
    AMBIENT: "degC",
    STRING_VOLTAGE: "V",
}

#: Accepted input names for each canonical column, first match wins.
ALIASES: dict[str, tuple[str, ...]] = {
    TIMESTAMP: ("Timestamp", "PacketDateTime", "timestamp", "DateTime", "datetime", "Time Stamp"),
    CELL_NUMBER: ("CellNumber", "Cell ID", "CellId", "cell_id", "Cell", "cell"),
    DEVICE_ID: ("DeviceID", "Device ID", "device_id", "DeviceId"),
    CELL_ID: ("CellID",),
    VOLTAGE: ("CellVoltage", "Cell Voltage", "cell_voltage", "Voltage"),
    TEMPERATURE: ("CellTemperature", "Cell Temperature", "cell_temperature", "Temperature"),
    SPECIFIC_GRAVITY: (
        "CellSpecificGravity",
        "Cell Specific Gravity",
        "cell_specific_gravity",
        "SpecificGravity",
        "SG",
    ),
    CURRENT: ("InstantaneousCurrent", "Instantaneous Current", "instantaneous_current", "Current"),
    AMBIENT: ("AmbientTemperature", "Ambient Temperature", "ambient_temperature"),
    STRING_VOLTAGE: ("StringVoltage", "String Voltage", "string_voltage"),
}

#: The fields of the raw BMS packet format (73 columns; see ``tests/data/bms_packet_sample.csv``).
RAW_PACKET_COLUMNS: tuple[str, ...] = (
    "PacketID",
    "StartPacket",
    "ProtocolVersion",
    "DataIdentifier",
    "SiteID",
    "Time",
    "Date",
    "PacketDateTime",
    "DeviceID",
    "BMSManufacturerID",
    "SerialNumber",
    "InstallationDate",
    "CellsConnectedCount",
    "ProblemCells",
    "CellNumber",
    "CellVoltage",
    "CellTemperature",
    "CellSpecificGravity",
    "CellServerTime",
    "StringVoltage",
    "SystemPeakCurrentInChargeOneCycle",
    "AverageDischargingCurrent",
    "AverageChargingCurrent",
    "AhInForOneChargeCycle",
    "AhOutForOneDischargeCycle",
    "CumulativeAHIn",
    "CumulativeAHOut",
    "ChargeTimeCycle",
    "DischargeTimeCycle",
    "TotalChargingEnergy",
    "TotalDischargingEnergy",
    "EveryHourAvgTemp",
    "CumulativeTotalAvgTempEveryHour",
    "ChargeOrDischargeCycle",
    "SocLatestValueForEveryCycle",
    "DodLatestValueForEveryCycle",
    "SystemPeakCurrentInDischargeOneCycle",
    "InstantaneousCurrent",
    "AmbientTemperature",
    "BatteryRunHours",
    "BMSBankDischargeCycle",
    "BMSAmbientTemperatureHN",
    "BMSSocLN",
    "BMSStringVoltageLNH",
    "BMSStringCurrentHN",
    "BMSBmsSedCommunication",
    "BMSCellCommunication",
    "BMSCellVoltageLN",
    "BMSCellVoltageNH",
    "BMSCellTemperatureHN",
    "BMSBuzzer",
    "ChargerID",
    "ChargerDeviceID",
    "ACVoltage",
    "ACCurrent",
    "Frequency",
    "Energy",
    "ChargerInputMains",
    "ChargerInputPhase",
    "ChargerDCVoltageOLN",
    "ChargerACVoltageULN",
    "ChargerLoad",
    "ChargerTrip",
    "ChargerOutputMccb",
    "ChargerBatteryCondition",
    "ChargerTestPushButton",
    "ChargerResetPushButton",
    "ChargerAlarmSupplyFuse",
    "ChargerFilterFuse",
    "ChargerOutputFuse",
    "ChargerInputFuse",
    "ChargerRectifierFuse",
    "ServerTime",
)


def alias_key(name: str) -> str:
    """How names are compared after an exact match failed: case, spaces, ``_`` and ``-`` ignored."""
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for canonical, names in ALIASES.items():
        for name in names:
            key = alias_key(name)
            if index.get(key, canonical) != canonical:
                ambiguous.add(key)  # "Cell ID" (CellNumber) vs "CellID": only exact names decide
            index.setdefault(key, canonical)
    return {k: v for k, v in index.items() if k not in ambiguous}


#: ``alias_key(name) -> canonical name`` for every alias whose key is unambiguous.
ALIAS_INDEX: dict[str, str] = _alias_index()
#: Exact alias -> canonical name.
ALIAS_EXACT: dict[str, str] = {name: canonical for canonical, names in ALIASES.items() for name in names}


def canonical_name(name: str) -> str | None:
    """The canonical column an input name stands for (exact alias first, then :func:`alias_key`), or None."""
    return ALIAS_EXACT.get(name) or ALIAS_INDEX.get(alias_key(name))


def find_alias(names: list[str] | tuple[str, ...] | set[str], canonical: str) -> str | None:
    """The input name among ``names`` that gives ``canonical``: its aliases in order, then any name
    whose :func:`alias_key` matches one of them (``"cell voltage"``, ``"CELL_VOLTAGE"``)."""
    present = set(names)
    for alias in ALIASES.get(canonical, (canonical,)):
        if alias in present:
            return alias
    for name in names:
        if name not in ALIAS_EXACT and ALIAS_INDEX.get(alias_key(name)) == canonical:
            return name
    return None


#: 0xFFFF register values meaning "no reading".
SENTINELS: dict[str, float] = {
    VOLTAGE: 65.535,
    TEMPERATURE: 65535.0,
    SPECIFIC_GRAVITY: 59.749,
    AMBIENT: 65535.0,
}


@dataclass(frozen=True)
class Limits:
    """Physically possible range (inclusive) of each measurement of a 2 V lead-acid cell.

    Values outside are flagged ``out_of_range`` and treated as missing. Override with
    ``Limits(overrides={...})`` or the ``BMS_LIMITS`` environment variable
    (JSON ``{"CellVoltage": [0, 3.0], ...}``).
    """

    ranges: dict[str, tuple[float, float]] = field(
        default_factory=lambda: {
            VOLTAGE: (0.0, 3.0),  # a 2 V cell: 0 V (open/shorted) .. 2.75 V equalise + margin
            TEMPERATURE: (-30.0, 85.0),
            SPECIFIC_GRAVITY: (1.000, 1.350),  # water .. far above any full-charge SG
            CURRENT: (-5000.0, 5000.0),
            AMBIENT: (-40.0, 70.0),
            STRING_VOLTAGE: (0.0, 1000.0),
        }
    )

    def with_overrides(self, overrides: dict[str, tuple[float, float]] | None) -> "Limits":
        merged = dict(self.ranges)
        for name, (low, high) in (overrides or {}).items():
            if low >= high:
                raise ValueError(f"limit for {name}: low {low} must be below high {high}")
            merged[name] = (float(low), float(high))
        return Limits(ranges=merged)


def quality_column(name: str) -> str:
    return f"{name}{QUALITY_SUFFIX}"


def make_cell_id(device: str, cell_number: int) -> str:
    return f"{device}-{int(cell_number)}"
