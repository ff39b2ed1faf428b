"""Which database, how to connect, and bringing its schema up to date (Alembic).

``BMS_DATABASE_URL`` picks the database (``postgresql+psycopg://user@host/db`` in
production); without it the store is SQLite at ``$BMS_WORKSPACE/bms.db`` (embedded, nothing
to install). SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed ingest survives
the process being killed (kill -9); ``BMS_SQLITE_SYNCHRONOUS=FULL`` also survives power loss.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bms_schema.errors import InputError

MIGRATIONS = Path(__file__).with_name("migrations")
DATABASE_FILE = "bms.db"


def database_url(workspace: Path | None = None, url: str | None = None) -> str:
    """The store's URL: ``url``, else ``BMS_DATABASE_URL``, else SQLite in the workspace."""
    url = url or os.environ.get("BMS_DATABASE_URL") or None
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not psycopg2
        return url
    if workspace is None:
        from bms_schema.paths import workspace as default_workspace

        workspace = default_workspace()
    workspace.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(workspace / DATABASE_FILE).resolve()}"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    synchronous = os.environ.get("BMS_SQLITE_SYNCHRONOUS", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL", "EXTRA"):
        synchronous = "NORMAL"
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def create_engine(url: str) -> Any:
    """A SQLAlchemy engine for ``url`` (SQLite pragmas set on every connection)."""
    import sqlalchemy as sa

    try:
        if url.startswith("sqlite"):
            engine = sa.create_engine(url, connect_args={"check_same_thread": False})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise InputError(f"BMS_DATABASE_URL: cannot use {redact(url)!r}: {exc}") from exc
    return engine


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    head, sep, tail = url.partition("://")
    if not sep or "@" not in tail:
        return url
    cred, _, host = tail.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{head}://{user}:***@{host}" if ":" in cred else f"{head}://{user}@{host}"


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(engine: Any) -> str | None:
    """Upgrade the database to the newest migration; returns the revision it is at."""
    import logging

    from alembic import command
    from alembic.runtime.migration import MigrationContext

    logging.getLogger("alembic").setLevel(logging.WARNING)  # no per-start INFO chatter
    config = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def current_revision(engine: Any) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()
