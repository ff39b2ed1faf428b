"""Serve the ``champion`` of each registered model (or a pinned version) and swap atomically.

The served version is the registry's ``champion`` alias, or the version pinned with
``BMS_PIN_<NAME>`` (``<NAME>`` = the registry name or the endpoint, upper case, ``-``/``.`` as
``_``: ``BMS_PIN_ANOMALY_HYBRID=v0003`` or ``BMS_PIN_ANOMALY=v0003``; a value ``challenger``
or ``latest`` follows that alias instead).

A :class:`ModelHolder` owns one reference to a fully built :class:`LoadedModel`. Loading a
new version happens off to the side (registry checksums verified, the model object built
completely); only then is the single reference replaced. A request reads the reference
once at its start (:meth:`ModelHolder.require`) and keeps using that object, so a swap
in the middle of a request never affects it: in-flight requests finish on the old
version, new requests get the new one, nobody fails. A load that fails leaves the old
version serving and is reported in ``/models`` and the reload answer.

:class:`RegistryWatcher` polls the ``latest`` links every few seconds (a cheap
``readlink``) and calls :meth:`ModelHub.refresh` when one moved; ``POST
/v1/models/reload`` does the same on request.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from bms_schema.registry import ModelRegistry

from .errors import ModelUnavailable

log = logging.getLogger("bms.live")

#: A loader builds the served object of one registered version: ``loader(version, registry)``.
Loader = Callable[[str, ModelRegistry], Any]


@dataclass(frozen=True)
class ModelSpec:
    """Which registered model serves an endpoint and how to build it."""

    key: str  # endpoint name: anomaly | failure | forecast
    registry_name: str  # name in the model registry
    loader: Loader


@dataclass(frozen=True)
class LoadedModel:
    """One fully built model version; never mutated after construction."""

    key: str
    name: str
    version: str
    model: Any
    metadata: dict[str, Any]
    loaded_at: datetime
    load_seconds: float

    def describe(self) -> dict[str, Any]:
        meta = self.metadata
        return {
            "name": self.name,
            "version": self.version,
            "created": meta.get("created"),
            "loaded_at": self.loaded_at.isoformat(),
            "load_seconds": round(self.load_seconds, 4),
            "metrics": meta.get("metrics", {}),
            "features": meta.get("features") if isinstance(meta.get("features"), (list, dict)) else [],
        }


@dataclass
class RefreshResult:
    key: str
    name: str
    status: str  # loaded | unchanged | absent | failed
    version: str | None = None
    previous: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class ModelHolder:
    """The served version of one model."""

    def __init__(
        self, spec: ModelSpec, registry: ModelRegistry, on_change: Callable[[LoadedModel], None] | None = None
    ):
        self.spec = spec
        self.registry = registry
        self._current: LoadedModel | None = None
        self._load_lock = threading.Lock()  # one load at a time; readers never take it
        self._on_change = on_change
        self.last_error: str | None = None
        self.last_error_version: str | None = None

    def current(self) -> LoadedModel | None:
        return self._current

    def require(self) -> LoadedModel:
        """The served version, or :class:`ModelUnavailable` (HTTP 503) when there is none."""
        loaded = self._current
        if loaded is None:
            raise ModelUnavailable(self.spec.key, self.spec.registry_name, self.last_error)
        return loaded

    def pin(self) -> str | None:
        """The version (or alias) pinned for this model by ``BMS_PIN_<NAME>``, if any."""
        for name in (self.spec.registry_name, self.spec.key):
            value = os.environ.get("BMS_PIN_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper(), "").strip()
            if value:
                return value
        return None

    def latest_version(self) -> str | None:
        """The version to serve: the pinned one, else the registry's champion (``None``: nothing to serve)."""
        try:
            return self.registry.resolve(self.spec.registry_name, self.pin() or "champion")
        except Exception as exc:  # noqa: BLE001 - a bad pin or aliases file must not stop the service
            self.last_error = f"cannot resolve the version to serve: {exc}"
            return None

    def refresh(self, force: bool = False) -> RefreshResult:
        """Load the registry's latest version if it differs from the served one."""
        spec = self.spec
        with self._load_lock:
            previous = self._current.version if self._current else None
            latest = self.latest_version()
            if latest is None:
                return RefreshResult(spec.key, spec.registry_name, "absent", previous=previous)
            if latest == previous and not force:
                return RefreshResult(spec.key, spec.registry_name, "unchanged", version=latest)
            if latest == self.last_error_version and not force:
                # Do not retry a version that failed every poll; a new version or a forced reload will.
                return RefreshResult(
                    spec.key, spec.registry_name, "failed", version=latest, previous=previous, error=self.last_error
                )
            start = time.perf_counter()
            try:
                version = self.registry.load(spec.registry_name, latest)  # verifies checksums
                model = spec.loader(version.version, self.registry)
            except Exception as exc:  # a broken version must never take the service down
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.last_error_version = latest
                log.warning("loading %s/%s failed: %s", spec.registry_name, latest, self.last_error)
                return RefreshResult(
                    spec.key, spec.registry_name, "failed", version=latest, previous=previous, error=self.last_error
                )
            loaded = LoadedModel(
                key=spec.key,
                name=spec.registry_name,
                version=version.version,
                model=model,
                metadata=version.metadata,
                loaded_at=datetime.now(timezone.utc),
                load_seconds=time.perf_counter() - start,
            )
            self._current = loaded  # the atomic swap: one reference assignment
            self.last_error = None
            self.last_error_version = None
            log.info(
                "serving %s/%s (was %s), loaded in %.2fs",
                spec.registry_name,
                loaded.version,
                previous,
                loaded.load_seconds,
            )
        if self._on_change is not None:
            self._on_change(loaded)
        return RefreshResult(spec.key, spec.registry_name, "loaded", version=loaded.version, previous=previous)

    def describe(self) -> dict[str, Any]:
        loaded = self._current
        out: dict[str, Any] = {
            "endpoint": f"/v1/{self.spec.key}",
            "name": self.spec.registry_name,
            "loaded": loaded is not None,
        }
        if loaded is not None:
            out.update(loaded.describe())
        out["serving"] = f"pinned {self.pin()}" if self.pin() else "champion"
        if self.last_error:
            out["last_error"] = self.last_error
        return out


@dataclass
class ModelHub:
    """The holders of every served model."""

    holders: dict[str, ModelHolder] = field(default_factory=dict)

    def __getitem__(self, key: str) -> ModelHolder:
        return self.holders[key]

    def refresh(self, force: bool = False) -> list[RefreshResult]:
        return [holder.refresh(force=force) for holder in self.holders.values()]

    def changed(self) -> bool:
        """True when some ``latest`` link points at a version other than the served one."""
        for holder in self.holders.values():
            current = holder.current()
            latest = holder.latest_version()
            if (
                latest is not None
                and (current is None or current.version != latest)
                and latest != holder.last_error_version
            ):
                return True
        return False


class RegistryWatcher:
    """A daemon thread that checks the ``latest`` links every ``interval`` seconds."""

    def __init__(self, hub: ModelHub, interval: float):
        self.hub = hub
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="bms-live-registry-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.hub.changed():
                    self.hub.refresh()
            except Exception:  # keep watching whatever happens
                log.exception("registry watcher: refresh failed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
