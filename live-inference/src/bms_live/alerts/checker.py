"""Periodic model checks (drift, model degradation) on a timer thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("bms.live.alerts")


class PeriodicCheck:
    def __init__(self, every_seconds: float, check: Callable[[], Any]) -> None:
        self.every = every_seconds
        self.check = check
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.every <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="bms-alert-checks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.check()
            except Exception:  # a failing check must not stop the next one
                log.exception("alert model checks failed")
