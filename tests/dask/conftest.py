"""One LocalCluster (2 worker processes, 1 thread each) and one small fleet dataset for the Dask engine tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
FAILURE_TESTS = str(HERE.parent / "failure")
if FAILURE_TESTS not in sys.path:
    sys.path.insert(0, FAILURE_TESTS)


@pytest.fixture(scope="session")
def cluster() -> Iterator[str]:
    """The scheduler address of a LocalCluster(n_workers=2, threads_per_worker=1, processes=True)."""
    from bms_schema.distributed import close_clients
    from distributed import LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield str(local.scheduler_address)
    finally:
        close_clients()
        local.close()


@pytest.fixture(scope="session")
def fleet_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 devices x 8 cells x 6 days at 10 min (27.6k raw packet rows), partitioned by device and day."""
    from bms_datagen.dataset import simulate_dataset
    from bms_datagen.fleet_config import FleetConfig

    folder = tmp_path_factory.mktemp("dask") / "fleet"
    config = FleetConfig(devices=4, cells_per_device=8, days=6, interval_minutes=10, seed=3)
    simulate_dataset(folder, config, batch_devices=1, workers=1)
    return folder
