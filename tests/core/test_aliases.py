"""One table of column names: readings and tables accept the same aliases; nothing is silently lost."""

from __future__ import annotations

import pandas as pd
import pytest
from bms_schema import columns as C
from bms_schema.models import Reading
from bms_schema.normalize import normalize
from pydantic import ValidationError

BASE = {"DeviceID": "A", "CellNumber": 3, "Timestamp": "2026-01-01T00:00:00Z"}


def test_reading_fields_take_their_aliases_from_the_one_table():
    for name in ("DeviceID", "CellNumber", "Timestamp", *C.CORE_COLUMNS, C.STRING_VOLTAGE):
        assert tuple(Reading.model_fields[name].validation_alias.choices) == C.ALIASES[name]


def test_voltage_alias_is_a_cell_voltage_not_an_extra():
    reading = Reading.model_validate({**BASE, "Voltage": 2.2})
    assert reading.CellVoltage == 2.2 and not reading.model_extra


@pytest.mark.parametrize("key", ["cell voltage", "CELL_VOLTAGE", "Cell-Voltage", "cellvoltage"])
def test_case_and_spacing_do_not_matter(key):
    assert Reading.model_validate({**BASE, key: 2.15}).CellVoltage == 2.15


def test_unknown_field_is_an_error_that_names_it():
    with pytest.raises(ValidationError) as info:
        Reading.model_validate({**BASE, "Volt": 2.2, "CellTemperature": 25})
    text = str(info.value)
    assert "unrecognised field(s) 'Volt'" in text and "'Voltage'" in text


def test_two_names_for_one_field_with_different_values_is_an_error():
    with pytest.raises(ValidationError, match="'CellVoltage' and 'Voltage' both give CellVoltage"):
        Reading.model_validate({**BASE, "CellVoltage": 2.1, "Voltage": 2.2})


def test_labels_and_raw_packet_fields_pass_through():
    reading = Reading.model_validate({**BASE, "CellVoltage": 2.2, "IsDead": 0, "SerialNumber": "CH1", "CellID": "A-3"})
    assert reading.model_extra == {"IsDead": 0, "SerialNumber": "CH1", "CellID": "A-3"}


def test_tables_use_the_same_aliases_and_matching():
    frame = pd.DataFrame(
        {
            "device id": ["A", "A"],
            "Cell": [1, 2],
            "time stamp": ["2026-01-01T00:00:00Z"] * 2,
            "Voltage": [2.2, 2.21],
            "cell temperature": [25.0, 25.1],
            "SG": [1.21, 1.22],
            "Current": [0.0, 0.0],
            "Ambient Temperature": [24.0, 24.0],
            "Note": ["x", "y"],
        }
    )
    canonical, report = normalize(frame)
    assert canonical["CellID"].tolist() == ["A-1", "A-2"]
    assert canonical["CellVoltage"].tolist() == [2.2, 2.21]
    assert canonical["CellTemperature"].tolist() == [25.0, 25.1]
    assert canonical["Note"].tolist() == ["x", "y"]  # unknown table columns pass through, never dropped
    assert report.renamed["Voltage"] == "CellVoltage" and report.renamed["cell temperature"] == "CellTemperature"


def test_ambiguous_key_needs_the_exact_name():
    assert C.canonical_name("CellID") == "CellID" and C.canonical_name("Cell ID") == "CellNumber"
    assert C.canonical_name("cellid") is None
