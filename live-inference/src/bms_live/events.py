"""In-process publication of what ingest committed, for live consumers (the WebSocket stream and
alert delivery of the console build on it).

:meth:`EventBus.publish` is called after each ingest commit with one event (new readings,
their scores, the alerts); every subscriber has its own bounded queue and a subscriber that
does not keep up loses its oldest events (counted in ``dropped``) - publishing never blocks and
never waits for a consumer, so a slow client cannot slow ingest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Subscription:
    """A bounded queue of events, optionally only those of some devices."""

    maxsize: int = 1000
    devices: frozenset[str] | None = None
    events: deque[dict[str, Any]] = field(default_factory=deque)
    dropped: int = 0
    notify: Callable[[], None] | None = None  # called (from the publishing thread) after each new event
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, event: dict[str, Any]) -> None:
        if self.devices is not None and not (set(event.get("devices", ())) & self.devices):
            return
        with self._lock:
            if len(self.events) >= self.maxsize:
                self.events.popleft()
                self.dropped += 1
            self.events.append(event)
        if self.notify is not None:
            self.notify()

    def drain(self, limit: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            n = len(self.events) if limit is None else min(limit, len(self.events))
            return [self.events.popleft() for _ in range(n)]


class EventBus:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()
        self.published = 0

    def subscribe(
        self, maxsize: int = 1000, devices: set[str] | None = None, notify: Callable[[], None] | None = None
    ) -> Subscription:
        sub = Subscription(maxsize=maxsize, devices=frozenset(devices) if devices else None, notify=notify)
        with self._lock:
            self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subscriptions)
        self.published += 1
        for sub in subs:  # a loop over subscribers, each an O(1) append
            sub.offer(event)
