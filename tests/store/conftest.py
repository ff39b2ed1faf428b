"""Storage tests run on SQLite and on PostgreSQL (``BMS_TEST_DATABASE_URL``, started by
``.ci/run``). Each PostgreSQL test gets a database of its own. With ``CI=true`` and no
PostgreSQL the PostgreSQL cases fail instead of skipping: CI must really run them."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ENGINES = ["sqlite", "postgresql"]


def _pg_admin_url() -> str | None:
    return os.environ.get("BMS_TEST_DATABASE_URL") or None


@pytest.fixture(params=ENGINES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bms.db'}"
        return
    admin = _pg_admin_url()
    if admin is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("BMS_TEST_DATABASE_URL is not set: .ci/run must start PostgreSQL for the storage tests")
        pytest.skip("no PostgreSQL: set BMS_TEST_DATABASE_URL (bash .ci/postgres.sh starts one)")
    import sqlalchemy as sa

    name = f"bms_t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture
def store(database_url: str, workspace) -> Iterator[object]:
    from bms_live.store import Store

    s = Store(url=database_url)
    try:
        yield s
    finally:
        s.close()
