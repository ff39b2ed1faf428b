"""The BMS-Flux store: every ingested reading, packet, prediction, forecast, alert, delivery,
piece of feedback and model decision, in SQLite (default) or PostgreSQL.

:class:`Store` is the one data-access layer: the ingest path, the REST routes, the CLI and
the live service's history and feedback all go through it. Writes are SQLAlchemy Core
statements in one transaction per ingest (an answer is sent only after its commit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema import columns as C

from . import tables as T
from .engine import create_engine, current_revision, database_url, head_revision, migrate, redact

__all__ = ["Store", "IngestResult", "now_us", "QUALITY_BITS", "VALUE_COLUMNS"]

#: Canonical measurement -> column of ``readings``.
VALUE_COLUMNS: dict[str, str] = {
    C.VOLTAGE: "voltage",
    C.TEMPERATURE: "temperature",
    C.SPECIFIC_GRAVITY: "specific_gravity",
    C.CURRENT: "current",
    C.AMBIENT: "ambient",
    C.STRING_VOLTAGE: "string_voltage",
}
#: ``readings.quality`` bits.
QUALITY_BITS = {C.SENSOR_FAULT: 1, C.OUT_OF_RANGE: 2}
MAX_PAGE = 10_000


def now_us() -> int:
    return time.time_ns() // 1000


def to_us(ts: pd.Series | pd.DatetimeIndex) -> np.ndarray:
    """Epoch microseconds of UTC timestamps (any resolution)."""
    index = pd.DatetimeIndex(ts)
    if index.tz is None:
        index = index.tz_localize("UTC")
    return index.as_unit("us").asi8.astype(np.int64)


def from_us(values: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values, dtype=np.int64), unit="us", utc=True))


def iso_us(value: int | None) -> str | None:
    if value is None:
        return None
    text = pd.Timestamp(int(value), unit="us", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[:-7] if text.endswith(".000000") else text) + "Z"


@dataclass
class IngestResult:
    """What one ingest stored."""

    received: int
    stored: int
    duplicates: int
    packets: int
    new_rows: pd.DataFrame  # the newly stored readings (canonical columns + cell_key, ts_us)
    predictions: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)


class Store:
    """Data access over one database (``url``; see :func:`bms_live.store.engine.database_url`)."""

    def __init__(self, url: str | None = None, workspace: Path | None = None, migrate_schema: bool = True):
        self.url = database_url(workspace, url)
        self.engine = create_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._cell_keys: dict[tuple[str, int], int] = {}
        self._write_lock = threading.Lock()  # one writer at a time in this process (SQLite's rule anyway)
        #: after an alert is resolved, the same (cell, kind) opens no new alert for this long
        self.alert_cooldown_us = 0
        self.revision = migrate(self.engine) if migrate_schema else current_revision(self.engine)

    # -- plumbing ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {"url": redact(self.url), "dialect": self.dialect, "revision": self.revision, "head": head_revision()}

    def close(self) -> None:
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)

    # -- ingest -----------------------------------------------------------------------------
    def _keys_for(self, conn: Any, devices: list[str], numbers: list[int], ts_us: list[int]) -> list[int]:
        """The ``cell_key`` of each (device, cell number), creating unknown cells; moves each
        cell's ``last_us`` forward (one statement per distinct time, i.e. per packet)."""
        import sqlalchemy as sa

        keys_of = self._cell_keys
        pairs = list(zip(devices, numbers))
        missing: dict[tuple[str, int], list[int]] = {}
        for pair, t in zip(pairs, ts_us):  # dict lookups, one per reading
            if pair not in keys_of:
                span = missing.setdefault(pair, [t, t])
                span[0], span[1] = min(span[0], t), max(span[1], t)
        if missing:
            rows = [
                {"device_id": d, "cell_number": n, "first_us": lo, "last_us": hi}
                for (d, n), (lo, hi) in missing.items()
            ]
            conn.execute(
                self._insert(T.cells).on_conflict_do_nothing(index_elements=["device_id", "cell_number"]), rows
            )
            for device in {d for d, _ in missing}:  # a query per new device, not per row
                found = conn.execute(
                    sa.select(T.cells.c.cell_key, T.cells.c.cell_number).where(T.cells.c.device_id == device)
                ).all()
                for key, number in found:
                    keys_of[(device, int(number))] = int(key)
        keys = [keys_of[p] for p in pairs]
        by_time: dict[int, set[int]] = {}
        for k, t in zip(keys, ts_us):
            by_time.setdefault(t, set()).add(k)
        for t, members in by_time.items():
            conn.execute(
                T.cells.update().where(T.cells.c.cell_key.in_(sorted(members)), T.cells.c.last_us < t).values(last_us=t)
            )
        return keys

    def ingest(
        self,
        frame: pd.DataFrame,
        source: str,
        score: Callable[[Any, pd.DataFrame], tuple[list[dict[str, Any]], list[dict[str, Any]]]] | None = None,
    ) -> IngestResult:
        """Store canonical readings idempotently (a reading already stored for its (cell, time) is
        skipped), then ``score(conn, new_rows)`` -> (prediction rows, alert rows) stored in the
        same transaction. Returns after the commit: what it reports is durable."""
        import sqlalchemy as sa

        n = len(frame)
        devices = [str(d) for d in frame[C.DEVICE_ID].tolist()]
        numbers = frame[C.CELL_NUMBER].to_numpy(dtype=np.int64).tolist()
        ts_us = to_us(frame[C.TIMESTAMP]).tolist()
        received = now_us()
        quality = np.zeros(n, dtype=np.int64)
        for flag, bit in QUALITY_BITS.items():
            if flag in frame:
                quality |= np.where(frame[flag].to_numpy(dtype=bool), bit, 0)
        quality_list = quality.tolist()
        values: dict[str, list[Any]] = {}
        for name, column in VALUE_COLUMNS.items():
            if name in frame:
                arr = frame[name].to_numpy(dtype=np.float64)
                gaps = np.isnan(arr)
                if gaps.any():
                    cells = arr.astype(object)
                    cells[gaps] = None
                    values[column] = cells.tolist()
                else:
                    values[column] = arr.tolist()
            else:
                values[column] = [None] * n
        with self._write_lock, self.engine.begin() as conn:
            keys = self._keys_for(conn, devices, numbers, ts_us)
            # packets: one per (device, time)
            counts: dict[tuple[str, int], int] = {}
            for pair in zip(devices, ts_us):
                counts[pair] = counts.get(pair, 0) + 1
            packet_rows = [
                {"device_id": d, "ts_us": t, "received_us": received, "cells": c, "source": source}
                for (d, t), c in counts.items()
            ]
            new_packets = conn.execute(
                self._insert(T.packets)
                .on_conflict_do_nothing(index_elements=["device_id", "ts_us"])
                .returning(T.packets.c.packet_key, T.packets.c.device_id, T.packets.c.ts_us),
                packet_rows,
            ).all()
            packet_keys = {(d, int(t)): int(k) for k, d, t in new_packets}
            for pair in counts:  # resent packets: look their keys up (rare)
                if pair not in packet_keys:
                    packet_keys[pair] = int(
                        conn.execute(
                            sa.select(T.packets.c.packet_key).where(
                                T.packets.c.device_id == pair[0], T.packets.c.ts_us == pair[1]
                            )
                        ).scalar()
                    )
            columns = list(values)
            rows = []
            seen: set[tuple[int, int]] = set()
            first = np.zeros(n, dtype=bool)
            for i in range(n):  # one dict per stored row: what the driver sends
                key = (keys[i], ts_us[i])
                if key in seen:
                    continue  # a (cell, time) repeated inside one request: the first one counts
                seen.add(key)
                first[i] = True
                row = {
                    "cell_key": keys[i],
                    "ts_us": ts_us[i],
                    "packet_key": packet_keys[(devices[i], ts_us[i])],
                    "quality": quality_list[i],
                    "received_us": received,
                }
                for c in columns:
                    row[c] = values[c][i]
                rows.append(row)
            inserted = conn.execute(
                self._insert(T.readings)
                .on_conflict_do_nothing(index_elements=["cell_key", "ts_us"])
                .returning(T.readings.c.cell_key, T.readings.c.ts_us),
                rows,
            ).all()
            stored = {(int(k), int(t)) for k, t in inserted}
            is_new = first & np.fromiter(((k, t) in stored for k, t in zip(keys, ts_us)), dtype=bool, count=n)
            new_rows = frame.loc[is_new].assign(
                cell_key=np.asarray(keys, dtype=np.int64)[is_new], ts_us=np.asarray(ts_us, dtype=np.int64)[is_new]
            )
            result = IngestResult(
                received=n,
                stored=int(is_new.sum()),
                duplicates=int(n - is_new.sum()),
                packets=len(new_packets),
                new_rows=new_rows,
            )
            if score is not None and len(new_rows):
                prediction_rows, alert_rows = score(conn, new_rows)
                if prediction_rows:
                    conn.execute(T.predictions.insert(), prediction_rows)
                result.predictions = len(prediction_rows)
                result.alerts = self._raise_alerts(conn, alert_rows)
        return result

    def _raise_alerts(self, conn: Any, alert_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Open an alert per (cell, kind), or count more occurrences on the open (or acknowledged)
        one; within ``alert_cooldown_us`` of the resolution of the same (cell, kind) nothing is
        opened (the row comes back with ``suppressed``). ``cell_key`` None = a string or model alert."""
        import sqlalchemy as sa

        a = T.alerts
        out = []
        now = now_us()
        for row in alert_rows:  # a loop over alerts (one per cell and rule per ingest), not readings
            row = dict(row)
            count = int(row.pop("count", 1))
            same = (a.c.cell_key.is_(None) if row.get("cell_key") is None else a.c.cell_key == row["cell_key"]) & (
                a.c.kind == row["kind"]
            )
            if row.get("cell_key") is None:
                same = same & (a.c.device_id == row["device_id"])
            existing = conn.execute(
                sa.select(a.c.alert_key, a.c.occurrences, a.c.severity).where(same, a.c.status != "resolved")
            ).first()
            if existing is not None:
                worse = _severity_rank(row["severity"]) > _severity_rank(existing.severity)
                values: dict[str, Any] = {
                    "occurrences": existing.occurrences + count,
                    "last_us": sa.func.max(a.c.last_us, row["last_us"])
                    if self.dialect == "sqlite"
                    else sa.func.greatest(a.c.last_us, row["last_us"]),
                }
                if worse:  # escalate: the alert now says what made it worse
                    values.update(severity=row["severity"], message=row["message"], details=row.get("details"))
                conn.execute(a.update().where(a.c.alert_key == existing.alert_key).values(**values))
                public = _public_alert(row)
                if not worse:
                    public["severity"] = existing.severity
                out.append({"alert_id": int(existing.alert_key), "new": False, **public})
                continue
            if self.alert_cooldown_us > 0:
                recent = conn.execute(
                    sa.select(a.c.alert_key).where(
                        same, a.c.status == "resolved", a.c.resolved_us > now - self.alert_cooldown_us
                    )
                ).first()
                if recent is not None:
                    out.append(
                        {
                            "alert_id": int(recent.alert_key),
                            "new": False,
                            "suppressed": "cooldown",
                            **_public_alert(row),
                        }
                    )
                    continue
            key = conn.execute(
                a.insert().values(status="open", occurrences=count, created_us=now, **row).returning(a.c.alert_key)
            ).scalar()
            out.append({"alert_id": int(key), "new": True, **_public_alert(row)})
        return out

    def raise_alerts(self, alert_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`_raise_alerts` in a transaction of its own (alerts raised outside ingest)."""
        if not alert_rows:
            return []
        with self._write_lock, self.engine.begin() as conn:
            return self._raise_alerts(conn, alert_rows)

    def open_alert_kinds(self, conn: Any, cell_keys: Sequence[int]) -> dict[int, set[str]]:
        """Kinds of the alerts not yet resolved of each of ``cell_keys``."""
        import sqlalchemy as sa

        a = T.alerts
        out: dict[int, set[str]] = {}
        for key, kind in conn.execute(
            sa.select(a.c.cell_key, a.c.kind).where(a.c.cell_key.in_(list(cell_keys)), a.c.status != "resolved")
        ).all():
            out.setdefault(int(key), set()).add(str(kind))
        return out

    # -- deliveries -------------------------------------------------------------------------
    def claim_delivery(self, alert_id: int, channel: str, target: str) -> dict[str, Any]:
        """The delivery row of (alert, channel, target), created ``pending`` if there is none (the
        unique index makes this idempotent across workers, retries and restarts)."""
        import sqlalchemy as sa

        d = T.alert_deliveries
        now = now_us()
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                self._insert(d).on_conflict_do_nothing(index_elements=["alert_key", "channel", "target"]),
                [
                    {
                        "alert_key": alert_id,
                        "channel": channel,
                        "target": target,
                        "status": "pending",
                        "attempts": 0,
                        "created_us": now,
                        "updated_us": now,
                        "next_attempt_us": now,
                    }
                ],
            )
            row = (
                conn.execute(
                    sa.select(d).where(d.c.alert_key == alert_id, d.c.channel == channel, d.c.target == target)
                )
                .mappings()
                .one()
            )
        return dict(row)

    def record_attempt(
        self, delivery_key: int, ok: bool, error: str | None, final: bool, next_attempt_us: int | None
    ) -> dict[str, Any]:
        """One more attempt: ``delivered``, ``pending`` (retry at ``next_attempt_us``) or ``failed`` (``final``)."""
        import sqlalchemy as sa

        d = T.alert_deliveries
        now = now_us()
        values: dict[str, Any] = {"attempts": d.c.attempts + 1, "updated_us": now}
        if ok:
            values.update(status="delivered", delivered_us=now, next_attempt_us=None)
        else:
            values.update(
                status="failed" if final else "pending",
                last_error=(error or "")[:2000],
                next_attempt_us=None if final else next_attempt_us,
            )
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(d.update().where(d.c.delivery_key == delivery_key).values(**values))
            row = conn.execute(sa.select(d).where(d.c.delivery_key == delivery_key)).mappings().one()
        return dict(row)

    def pending_deliveries(self) -> list[dict[str, Any]]:
        """Deliveries still to be tried (after a restart), oldest first."""
        import sqlalchemy as sa

        d = T.alert_deliveries
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(d).where(d.c.status == "pending").order_by(d.c.delivery_key)).mappings().all()
        return [dict(r) for r in rows]

    def undelivered_alerts(
        self, channels: Sequence[tuple[str, str]], since_us: int | None = None, limit: int = 1000
    ) -> list[int]:
        """Alerts not resolved that lack a delivery row for one of ``channels`` (a restart between
        the commit and the worker's claim)."""
        import sqlalchemy as sa

        a, d = T.alerts, T.alert_deliveries
        out: set[int] = set()
        with self.engine.connect() as conn:
            for channel, target in channels:
                done = sa.select(d.c.alert_key).where(
                    d.c.alert_key == a.c.alert_key, d.c.channel == channel, d.c.target == target
                )
                out.update(
                    int(k)
                    for (k,) in conn.execute(
                        sa.select(a.c.alert_key)
                        .where(a.c.status != "resolved", a.c.created_us >= (since_us or 0), ~done.exists())
                        .order_by(a.c.alert_key)
                        .limit(limit)
                    ).all()
                )
        return sorted(out)

    def deliveries(self, alert_id: int) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        d = T.alert_deliveries
        with self.engine.connect() as conn:
            rows = (
                conn.execute(sa.select(d).where(d.c.alert_key == alert_id).order_by(d.c.delivery_key)).mappings().all()
            )
        return [_public_delivery(r) for r in rows]

    # -- reads used by the service ------------------------------------------------------------
    def recent_readings(self, device: str, per_cell: int) -> pd.DataFrame:
        """The newest ``per_cell`` stored readings of every cell of ``device`` (canonical frame,
        oldest first), to rebuild the service's remembered history after a restart."""
        import sqlalchemy as sa

        r, c = T.readings, T.cells
        ranked = (
            sa.select(
                r,
                c.c.device_id,
                c.c.cell_number,
                sa.func.row_number().over(partition_by=r.c.cell_key, order_by=r.c.ts_us.desc()).label("rank"),
            )
            .join(c, c.c.cell_key == r.c.cell_key)
            .where(c.c.device_id == device)
            .subquery()
        )
        query = sa.select(ranked).where(ranked.c.rank <= per_cell).order_by(ranked.c.ts_us, ranked.c.cell_number)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return self._canonical(rows)

    def cell_history(
        self, device: str, cell_number: int | None = None, since_us: int | None = None, until_us: int | None = None
    ) -> pd.DataFrame:
        """Stored readings of a device (or one cell) as a canonical frame, oldest first."""
        import sqlalchemy as sa

        r, c = T.readings, T.cells
        query = (
            sa.select(r, c.c.device_id, c.c.cell_number)
            .join(c, c.c.cell_key == r.c.cell_key)
            .where(c.c.device_id == device)
        )
        if cell_number is not None:
            query = query.where(c.c.cell_number == cell_number)
        if since_us is not None:
            query = query.where(r.c.ts_us >= since_us)
        if until_us is not None:
            query = query.where(r.c.ts_us <= until_us)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(r.c.ts_us, c.c.cell_number)).mappings().all()
        return self._canonical(rows)

    def last_time(self, device: str, cell_number: int | None = None) -> int | None:
        import sqlalchemy as sa

        query = sa.select(sa.func.max(T.cells.c.last_us)).where(T.cells.c.device_id == device)
        if cell_number is not None:
            query = query.where(T.cells.c.cell_number == cell_number)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return int(value) if value is not None else None

    @staticmethod
    def _canonical(rows: Sequence[Any]) -> pd.DataFrame:
        from bms_schema.normalize import load_limits, normalize

        if not rows:
            return pd.DataFrame()
        frame = pd.DataFrame([dict(r) for r in rows])
        out = pd.DataFrame(
            {
                C.DEVICE_ID: frame["device_id"].astype(object),
                C.CELL_NUMBER: frame["cell_number"].astype(np.int64),
                C.TIMESTAMP: from_us(frame["ts_us"]),
            }
        )
        for name, column in VALUE_COLUMNS.items():
            out[name] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
        canonical, _ = normalize(out, load_limits())
        quality = frame["quality"].to_numpy(dtype=np.int64)
        for flag, bit in QUALITY_BITS.items():
            canonical[flag] = (quality & bit) > 0
        return canonical

    # -- feedback -----------------------------------------------------------------------------
    def prediction(self, prediction_id: str) -> dict[str, Any] | None:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(T.predictions).where(T.predictions.c.prediction_id == prediction_id))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def record_feedback(self, items: Iterable[dict[str, Any]]) -> None:
        """Store feedback; feedback for the same prediction id replaces the earlier one."""
        rows = [dict(item, created_us=now_us()) for item in items]
        if not rows:
            return
        stmt = self._insert(T.feedback)
        stmt = stmt.on_conflict_do_update(
            index_elements=["prediction_id"],
            set_={
                "actual": stmt.excluded.actual,
                "predicted": stmt.excluded.predicted,
                "created_us": stmt.excluded.created_us,
            },
        )
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(stmt, rows)

    def feedback_pairs(self, window: int) -> list[tuple[str, str, bool, bool, str]]:
        """The newest ``window`` feedback items of each model and of each (model, version), oldest
        first: (model, id, predicted, actual, version) - replayed in order they rebuild both windows."""
        import sqlalchemy as sa

        f = T.feedback
        order = (f.c.created_us.desc(), f.c.feedback_key.desc())
        ranked = sa.select(
            f,
            sa.func.row_number().over(partition_by=f.c.model, order_by=order).label("rank"),
            sa.func.row_number().over(partition_by=(f.c.model, f.c.model_version), order_by=order).label("vrank"),
        ).subquery()
        query = (
            sa.select(ranked)
            .where((ranked.c.rank <= window) | (ranked.c.vrank <= window))
            .order_by(ranked.c.created_us, ranked.c.feedback_key)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            (r["model"], r["prediction_id"], bool(r["predicted"]), bool(r["actual"]), r["model_version"]) for r in rows
        ]

    def record_decision(
        self, model_name: str, version: str, decision: str, previous: str | None = None, detail: str | None = None
    ) -> None:
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(
                T.model_decisions.insert().values(
                    model_name=model_name,
                    version=version,
                    decision=decision,
                    previous=previous,
                    detail=detail,
                    created_us=now_us(),
                )
            )

    # -- stored predictions written outside ingest ------------------------------------------------
    def store_predictions(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            with self._write_lock, self.engine.begin() as conn:
                conn.execute(T.predictions.insert(), rows)

    def store_forecast(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            stmt = self._insert(T.forecasts).on_conflict_do_nothing(
                index_elements=["cell_key", "origin_us", "target", "step", "model_version"]
            )
            with self._write_lock, self.engine.begin() as conn:
                conn.execute(stmt, rows)

    def cell_key(self, device: str, cell_number: int) -> int | None:
        import sqlalchemy as sa

        if (device, cell_number) in self._cell_keys:
            return self._cell_keys[(device, cell_number)]
        with self.engine.connect() as conn:
            key = conn.execute(
                sa.select(T.cells.c.cell_key).where(T.cells.c.device_id == device, T.cells.c.cell_number == cell_number)
            ).scalar()
        return int(key) if key is not None else None

    # -- alerts -------------------------------------------------------------------------------
    def set_alert_status(self, alert_id: int, status: str, by: str | None = None) -> dict[str, Any] | None:
        values: dict[str, Any] = {"status": status}
        if status == "acknowledged":
            values.update(acknowledged_us=now_us(), acknowledged_by=by)
        elif status == "resolved":
            values.update(resolved_us=now_us())
        with self._write_lock, self.engine.begin() as conn:
            updated = conn.execute(T.alerts.update().where(T.alerts.c.alert_key == alert_id).values(**values))
            if updated.rowcount == 0:
                return None
        page = self.alerts(alert_id=alert_id)
        return page["items"][0] if page["items"] else None

    # -- REST queries ---------------------------------------------------------------------------
    def _page(self, conn: Any, query: Any, limit: int, offset: int) -> tuple[list[dict[str, Any]], int | None]:
        limit = max(1, min(int(limit), MAX_PAGE))
        rows = conn.execute(query.limit(limit + 1).offset(offset)).mappings().all()
        more = len(rows) > limit
        return [dict(r) for r in rows[:limit]], (offset + limit if more else None)

    @staticmethod
    def _envelope(items: list[dict[str, Any]], limit: int, offset: int, next_offset: int | None) -> dict[str, Any]:
        return {"items": items, "count": len(items), "limit": limit, "offset": offset, "next_offset": next_offset}

    def fleet(self) -> dict[str, Any]:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            cells = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(sa.distinct(T.cells.c.device_id)),
                    sa.func.min(T.cells.c.first_us),
                    sa.func.max(T.cells.c.last_us),
                ).select_from(T.cells)
            ).one()
            packets = conn.execute(sa.select(sa.func.count()).select_from(T.packets)).scalar()
            open_alerts = conn.execute(
                sa.select(sa.func.count()).select_from(T.alerts).where(T.alerts.c.status != "resolved")
            ).scalar()
            last = cells[3]
            recent = 0
            if last is not None:
                recent = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(T.predictions)
                    .where(
                        T.predictions.c.kind == "anomaly",
                        T.predictions.c.flag.is_(True),
                        T.predictions.c.ts_us >= int(last) - 86_400_000_000,
                    )
                ).scalar()
        return {
            "devices": int(cells[1]),
            "cells": int(cells[0]),
            "packets": int(packets or 0),
            "first_reading": iso_us(cells[2]),
            "last_reading": iso_us(last),
            "open_alerts": int(open_alerts or 0),
            "anomalies_last_24h": int(recent or 0),
        }

    def devices(self, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        import sqlalchemy as sa

        c = T.cells
        open_alerts = (
            sa.select(T.alerts.c.device_id, sa.func.count().label("open_alerts"))
            .where(T.alerts.c.status != "resolved")
            .group_by(T.alerts.c.device_id)
            .subquery()
        )
        query = (
            sa.select(
                c.c.device_id,
                sa.func.count().label("cells"),
                sa.func.min(c.c.first_us).label("first_us"),
                sa.func.max(c.c.last_us).label("last_us"),
                sa.func.coalesce(sa.func.max(open_alerts.c.open_alerts), 0).label("open_alerts"),
            )
            .outerjoin(open_alerts, open_alerts.c.device_id == c.c.device_id)
            .group_by(c.c.device_id)
            .order_by(c.c.device_id)
        )
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
        items = [
            {
                "device_id": r["device_id"],
                "cells": int(r["cells"]),
                "first_reading": iso_us(r["first_us"]),
                "last_reading": iso_us(r["last_us"]),
                "open_alerts": int(r["open_alerts"]),
            }
            for r in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    def cells(self, device: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        import sqlalchemy as sa

        c, r = T.cells, T.readings
        query = sa.select(c).order_by(c.c.device_id, c.c.cell_number)
        if device is not None:
            query = query.where(c.c.device_id == device)
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
            keys = [r_["cell_key"] for r_ in rows]
            last_rows = {}
            if keys:
                found = (
                    conn.execute(
                        sa.select(r)
                        .join(c, (c.c.cell_key == r.c.cell_key) & (c.c.last_us == r.c.ts_us))
                        .where(r.c.cell_key.in_(keys))
                    )
                    .mappings()
                    .all()
                )
                last_rows = {f["cell_key"]: f for f in found}
        items = []
        for row in rows:
            last = last_rows.get(row["cell_key"], {})
            items.append(
                {
                    "cell_id": f"{row['device_id']}-{row['cell_number']}",
                    "device_id": row["device_id"],
                    "cell_number": int(row["cell_number"]),
                    "first_reading": iso_us(row["first_us"]),
                    "last_reading": iso_us(row["last_us"]),
                    "last": {name: last.get(column) for name, column in VALUE_COLUMNS.items()},
                }
            )
        return self._envelope(items, limit, offset, nxt)

    def readings(
        self,
        device: str,
        cell_number: int | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> dict[str, Any]:
        import sqlalchemy as sa

        r, c = T.readings, T.cells
        query = (
            sa.select(r, c.c.device_id, c.c.cell_number)
            .join(c, c.c.cell_key == r.c.cell_key)
            .where(c.c.device_id == device)
        )
        if cell_number is not None:
            query = query.where(c.c.cell_number == cell_number)
        if start_us is not None:
            query = query.where(r.c.ts_us >= start_us)
        if end_us is not None:
            query = query.where(r.c.ts_us < end_us)
        query = query.order_by(r.c.ts_us, c.c.cell_number)
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
        items = [
            {
                "cell_id": f"{row['device_id']}-{row['cell_number']}",
                "device_id": row["device_id"],
                "cell_number": int(row["cell_number"]),
                "timestamp": iso_us(row["ts_us"]),
                **{name: row[column] for name, column in VALUE_COLUMNS.items()},
                "sensor_fault": bool(row["quality"] & 1),
                "out_of_range": bool(row["quality"] & 2),
            }
            for row in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    def predictions_page(
        self,
        kind: str,
        device: str | None = None,
        cell_number: int | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        flagged: bool | None = None,
        label: str | None = None,
        latest_per_cell: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        import sqlalchemy as sa

        p, c = T.predictions, T.cells
        query = (
            sa.select(p, c.c.device_id, c.c.cell_number).join(c, c.c.cell_key == p.c.cell_key).where(p.c.kind == kind)
        )
        if device is not None:
            query = query.where(c.c.device_id == device)
        if cell_number is not None:
            query = query.where(c.c.cell_number == cell_number)
        if start_us is not None:
            query = query.where(p.c.ts_us >= start_us)
        if end_us is not None:
            query = query.where(p.c.ts_us < end_us)
        if flagged is not None:
            query = query.where(p.c.flag.is_(flagged))
        if label is not None:
            query = query.where(p.c.label == label)
        if latest_per_cell:
            newest = (
                sa.select(p.c.cell_key, sa.func.max(p.c.prediction_key).label("k"))
                .where(p.c.kind == kind)
                .group_by(p.c.cell_key)
                .subquery()
            )
            query = query.join(newest, newest.c.k == p.c.prediction_key)
            query = query.order_by(p.c.score.desc().nulls_last(), c.c.device_id, c.c.cell_number)
        else:
            query = query.order_by(p.c.ts_us.desc(), c.c.device_id, c.c.cell_number)
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
        items = [
            {
                "prediction_id": row["prediction_id"],
                "cell_id": f"{row['device_id']}-{row['cell_number']}",
                "device_id": row["device_id"],
                "cell_number": int(row["cell_number"]),
                "timestamp": iso_us(row["ts_us"]),
                "model": {"name": row["model_name"], "version": row["model_version"]},
                "score": row["score"],
                "flag": row["flag"],
                "label": row["label"],
                "reason": row["reason"],
            }
            for row in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    def forecasts_page(
        self, device: str, cell_number: int | None = None, limit: int = 1000, offset: int = 0
    ) -> dict[str, Any]:
        """The newest stored forecast of each cell of ``device`` (or of one cell)."""
        import sqlalchemy as sa

        f, c = T.forecasts, T.cells
        newest = sa.select(f.c.cell_key, sa.func.max(f.c.created_us).label("created")).group_by(f.c.cell_key).subquery()
        query = (
            sa.select(f, c.c.device_id, c.c.cell_number)
            .join(c, c.c.cell_key == f.c.cell_key)
            .join(newest, (newest.c.cell_key == f.c.cell_key) & (newest.c.created == f.c.created_us))
            .where(c.c.device_id == device)
        )
        if cell_number is not None:
            query = query.where(c.c.cell_number == cell_number)
        query = query.order_by(c.c.cell_number, f.c.target, f.c.step)
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
        items = [
            {
                "cell_id": f"{row['device_id']}-{row['cell_number']}",
                "origin": iso_us(row["origin_us"]),
                "timestamp": iso_us(row["ts_us"]),
                "target": row["target"],
                "step": int(row["step"]),
                "forecast": row["forecast"],
                "lower": row["lower"],
                "upper": row["upper"],
                "coverage": row["coverage"],
                "model": {"name": row["model_name"], "version": row["model_version"]},
                "created": iso_us(row["created_us"]),
            }
            for row in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    def alerts(
        self,
        status: str | None = None,
        device: str | None = None,
        alert_id: int | None = None,
        limit: int = 100,
        offset: int = 0,
        alert_ids: Sequence[int] | None = None,
    ) -> dict[str, Any]:
        import sqlalchemy as sa

        a, c = T.alerts, T.cells
        query = sa.select(a, c.c.cell_number).outerjoin(c, c.c.cell_key == a.c.cell_key)
        if status is not None:
            query = query.where(a.c.status == status)
        if device is not None:
            query = query.where(a.c.device_id == device)
        if alert_id is not None:
            query = query.where(a.c.alert_key == alert_id)
        if alert_ids is not None:
            query = query.where(a.c.alert_key.in_([int(k) for k in alert_ids]))
        query = query.order_by(a.c.created_us.desc(), a.c.alert_key.desc())
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
            keys = [r["alert_key"] for r in rows]
            deliveries: dict[int, list[dict[str, Any]]] = {}
            if keys:
                for d in conn.execute(
                    sa.select(T.alert_deliveries)
                    .where(T.alert_deliveries.c.alert_key.in_(keys))
                    .order_by(T.alert_deliveries.c.delivery_key)
                ).mappings():
                    deliveries.setdefault(d["alert_key"], []).append(_public_delivery(d))
        items = [
            {
                "alert_id": int(r["alert_key"]),
                "device_id": r["device_id"],
                "cell_id": f"{r['device_id']}-{r['cell_number']}" if r["cell_number"] is not None else None,
                "kind": r["kind"],
                "severity": r["severity"],
                "message": r["message"],
                "status": r["status"],
                "first_seen": iso_us(r["first_us"]),
                "last_seen": iso_us(r["last_us"]),
                "occurrences": int(r["occurrences"]),
                "prediction_id": r["prediction_id"],
                "created": iso_us(r["created_us"]),
                "acknowledged": iso_us(r["acknowledged_us"]),
                "acknowledged_by": r["acknowledged_by"],
                "resolved": iso_us(r["resolved_us"]),
                "action": r["action"],
                "details": _loads(r["details"]),
                "deliveries": deliveries.get(r["alert_key"], []),
            }
            for r in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    def feedback_page(self, model: str | None = None, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        import sqlalchemy as sa

        f = T.feedback
        query = sa.select(f).order_by(f.c.created_us.desc(), f.c.feedback_key.desc())
        if model is not None:
            query = query.where(f.c.model == model)
        with self.engine.connect() as conn:
            rows, nxt = self._page(conn, query, limit, offset)
        items = [
            {
                "prediction_id": r["prediction_id"],
                "model": r["model"],
                "model_version": r["model_version"],
                "predicted": bool(r["predicted"]),
                "actual": bool(r["actual"]),
                "score": r["score"],
                "created": iso_us(r["created_us"]),
            }
            for r in rows
        ]
        return self._envelope(items, limit, offset, nxt)

    # -- status and retention -------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        import sqlalchemy as sa

        counts = {}
        with self.engine.connect() as conn:
            for table in (
                T.cells,
                T.packets,
                T.readings,
                T.predictions,
                T.forecasts,
                T.alerts,
                T.feedback,
                T.model_decisions,
            ):
                counts[table.name] = int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)
            last = conn.execute(sa.select(sa.func.max(T.cells.c.last_us))).scalar()
            received = conn.execute(sa.select(sa.func.max(T.packets.c.received_us))).scalar()
        return {**self.describe(), "rows": counts, "last_reading": iso_us(last), "last_ingest": iso_us(received)}

    def cleanup(self, days: float, now: int | None = None) -> dict[str, Any]:
        """Delete readings, packets, predictions, forecasts and resolved alerts older than ``days``
        (by data time; feedback and model decisions are kept)."""
        import sqlalchemy as sa

        if days <= 0:
            from bms_schema.errors import InputError

            raise InputError(f"days: {days} must be more than 0 (how many days of data to keep)")
        horizon = (now if now is not None else self._newest_us()) - int(days * 86_400_000_000)
        out: dict[str, Any] = {}
        with self._write_lock, self.engine.begin() as conn:
            out["predictions"] = conn.execute(sa.delete(T.predictions).where(T.predictions.c.ts_us < horizon)).rowcount
            out["forecasts"] = conn.execute(sa.delete(T.forecasts).where(T.forecasts.c.ts_us < horizon)).rowcount
            out["readings"] = conn.execute(sa.delete(T.readings).where(T.readings.c.ts_us < horizon)).rowcount
            used = sa.select(T.readings.c.packet_key).where(T.readings.c.packet_key == T.packets.c.packet_key)
            out["packets"] = conn.execute(
                sa.delete(T.packets).where(T.packets.c.ts_us < horizon, ~used.exists())
            ).rowcount
            resolved = sa.select(T.alerts.c.alert_key).where(
                T.alerts.c.status == "resolved", T.alerts.c.last_us < horizon
            )
            out["alert_deliveries"] = conn.execute(
                sa.delete(T.alert_deliveries).where(T.alert_deliveries.c.alert_key.in_(resolved))
            ).rowcount
            out["alerts"] = conn.execute(
                sa.delete(T.alerts).where(T.alerts.c.status == "resolved", T.alerts.c.last_us < horizon)
            ).rowcount
        return {"deleted": out, "before": iso_us(horizon), "days": days}

    def _newest_us(self) -> int:
        """Retention counts back from now (wall clock)."""
        return now_us()


def _public_alert(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": row["kind"],
        "severity": row["severity"],
        "message": row["message"],
        "device_id": row["device_id"],
        "action": row.get("action"),
    }


def _severity_rank(name: str | None) -> int:
    return {"info": 0, "warning": 1, "critical": 2}.get(name or "", 1)


def _loads(text: str | None) -> Any:
    import json

    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _public_delivery(d: Any) -> dict[str, Any]:
    return {
        "channel": d["channel"],
        "target": _redact_target(d["target"]),
        "status": d["status"],
        "attempts": int(d["attempts"]),
        "last_error": d["last_error"],
        "created": iso_us(d["created_us"]),
        "delivered": iso_us(d["delivered_us"]),
        "next_attempt": iso_us(d["next_attempt_us"]) if d["status"] == "pending" else None,
    }


def _redact_target(target: str) -> str:
    """A webhook URL's path can be its secret (Slack's is): show scheme, host and the first path part."""
    if "://" not in target:
        return target
    scheme, _, rest = target.partition("://")
    host, _, path = rest.partition("/")
    first = path.split("/", 1)[0]
    return f"{scheme}://{host}/{first}" + ("/..." if "/" in path else "")
