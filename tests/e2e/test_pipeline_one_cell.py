"""The pipeline on one cell read every minute for a day, without discharges (issue 13).

Its own file so the two long pipeline variants land on different xdist workers (``--dist loadfile``
keeps a file on one worker)."""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.test_pipeline_variants import _run


@pytest.mark.slow
def test_one_cell_one_minute_no_discharge(workspace: Path) -> None:
    _, status, lines = _run(
        workspace, devices=1, cells_per_device=1, days=1, interval_minutes=1, discharge_every_days=0.0
    )
    assert all(status[n] in ("ok", "skipped") for n in status)
    assert "1 devices x 1 cells x 1440 readings" in lines["simulate"]
    assert "of 1 cells" in lines["failure"] and status["forecast"] == "ok"
    # one cell has no peers: its detector learns its own history, not from a prior fleet of strings
    assert status["anomaly_prior"] == "skipped" and "fewer than 3 cells" in lines["anomaly_prior"]
