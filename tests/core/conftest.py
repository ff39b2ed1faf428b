"""Fixtures for the data-core tests: the real packet sample as a raw frame, cleaned, and small tables."""

from __future__ import annotations

import pandas as pd
import pytest

CORE = ["CellVoltage", "CellTemperature", "CellSpecificGravity", "InstantaneousCurrent", "AmbientTemperature"]


@pytest.fixture
def raw_sample(sample_csv) -> pd.DataFrame:
    from bms_schema import read_table

    return read_table(sample_csv)


@pytest.fixture
def cleaned_sample(raw_sample) -> pd.DataFrame:
    from bms_schema.clean import clean_readings

    return clean_readings(raw_sample)[0]


def make_minimal(rows: list[tuple]) -> pd.DataFrame:
    """A minimal-format table from (device, cell, iso time, V, T, SG, I, ambient) tuples."""
    return pd.DataFrame(rows, columns=["DeviceID", "CellNumber", "Timestamp", *CORE])


@pytest.fixture
def minimal():
    return make_minimal
