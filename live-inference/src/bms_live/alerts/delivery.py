"""Alert delivery off the ingest path: a worker thread, a queue, retries with exponential backoff,
and a row per (alert, channel, target) in ``alert_deliveries`` recording every attempt.

Channels: a generic webhook (JSON POST of ``{"event": "alert", "alert": {...}}``), a
Slack-compatible webhook (``{"text", "blocks"}``) and email over SMTP (stdlib ``smtplib``;
STARTTLS, implicit TLS and login optional). An alert is delivered once per channel: the
delivery row is claimed (unique index) before the first attempt and a ``delivered`` row is
never sent again, across retries and restarts (pending rows are picked up again at start).
Delivery is at-least-once: a crash between the receiver's answer and the commit of
``delivered`` sends once more.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import smtplib
import threading
import time
from email.message import EmailMessage
from typing import Any

from .config import Channels, severity_rank

log = logging.getLogger("bms.live.alerts")


def _title(alert: dict[str, Any]) -> str:
    where = alert.get("cell_id") or alert.get("device_id")
    return f"[BMS-Flux {alert['severity']}] {alert['kind']} {where}"


def webhook_payload(alert: dict[str, Any]) -> dict[str, Any]:
    return {"event": "alert", "source": "bms-flux", "alert": alert}


def slack_payload(alert: dict[str, Any]) -> dict[str, Any]:
    title = _title(alert)
    fields = [
        {"type": "mrkdwn", "text": f"*Severity*\n{alert['severity']}"},
        {"type": "mrkdwn", "text": f"*Rule*\n{alert['kind']}"},
        {"type": "mrkdwn", "text": f"*Where*\n{alert.get('cell_id') or alert.get('device_id')}"},
        {"type": "mrkdwn", "text": f"*First seen*\n{alert.get('first_seen')}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": alert["message"]}},
        {"type": "section", "fields": fields},
    ]
    if alert.get("action"):
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Recommended action*: {alert['action']}"}}
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"alert {alert['alert_id']}"}]})
    return {"text": f"{title}: {alert['message']}", "blocks": blocks}


def email_message(alert: dict[str, Any], sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = _title(alert)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["X-BMS-Alert-Id"] = str(alert["alert_id"])
    lines = [
        alert["message"],
        "",
        f"Severity: {alert['severity']}",
        f"Rule: {alert['kind']}",
        f"Where: {alert.get('cell_id') or alert.get('device_id')}",
        f"First seen: {alert.get('first_seen')}   last seen: {alert.get('last_seen')}",
    ]
    if alert.get("action"):
        lines += ["", f"Recommended action: {alert['action']}"]
    lines += ["", f"Alert {alert['alert_id']} - acknowledge or resolve it on the console (/v1/alerts)."]
    msg.set_content("\n".join(lines))
    msg.add_attachment(
        json.dumps(alert, indent=2, default=str).encode(),
        maintype="application",
        subtype="json",
        filename=f"alert-{alert['alert_id']}.json",
    )
    return msg


def send(channel: str, target: str, alert: dict[str, Any], config: Channels) -> None:
    """Deliver ``alert`` once over ``channel``; raises with a readable message when it fails."""
    if channel in ("webhook", "slack"):
        import httpx

        body = webhook_payload(alert) if channel == "webhook" else slack_payload(alert)
        response = httpx.post(target, json=body, timeout=config.timeout_seconds)
        if response.status_code >= 300:
            raise RuntimeError(f"{channel} {target} answered HTTP {response.status_code}: {response.text[:200]}")
        return
    if channel == "email":
        if not config.smtp_host:
            raise RuntimeError("email: no SMTP host configured (BMS_SMTP_HOST)")
        msg = email_message(alert, config.smtp_from, config.smtp_to)
        smtp_class = smtplib.SMTP_SSL if config.smtp_ssl else smtplib.SMTP
        with smtp_class(config.smtp_host, config.smtp_port, timeout=config.timeout_seconds) as smtp:
            if config.smtp_starttls and not config.smtp_ssl:
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password or "")
            smtp.send_message(msg)
        return
    raise RuntimeError(f"unknown channel {channel!r}")


class DeliveryWorker:
    """One thread: new alert ids come in on a queue (``enqueue`` never blocks); retries wait in a heap."""

    def __init__(self, store: Any, config: Channels) -> None:
        self.store = store
        self.config = config
        self._queue: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._retries: list[tuple[float, int, int, str, str]] = []  # (due, seq, alert, channel, target)
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._outstanding = 0  # batches queued + retries scheduled, not yet processed
        self._count_lock = threading.Lock()
        self.attempts = 0

    @property
    def channels(self) -> list[tuple[str, str]]:
        return self.config.configured()

    def start(self) -> None:
        if not self.channels or self._thread is not None:
            return
        self._stop.clear()
        for row in self.store.pending_deliveries():  # a restart: retry what was left pending
            delay = max(0.0, ((row["next_attempt_us"] or 0) - time.time_ns() // 1000) / 1e6)
            self._schedule(delay, int(row["alert_key"]), row["channel"], row["target"])
        # alerts committed but never claimed (a stop between the commit and the worker), last 24 h
        missed = self.store.undelivered_alerts(self.channels, since_us=time.time_ns() // 1000 - 86_400_000_000)
        if missed:
            self._count(1)
            self._queue.put(missed)
        self._thread = threading.Thread(target=self._run, name="bms-alert-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._count_lock:  # what was left is pending in the store: the next start picks it up
            self._retries.clear()
            self._outstanding = 0
        self._queue = queue.SimpleQueue()

    def _count(self, delta: int) -> None:
        with self._count_lock:
            self._outstanding += delta

    def enqueue(self, alert_ids: list[int]) -> None:
        if self.channels and alert_ids:
            self._count(1)
            self._queue.put(list(alert_ids))

    def wait_idle(self, timeout: float = 10.0, include_retries: bool = True) -> bool:
        """Wait until every queued alert was tried (and, with ``include_retries``, every retry)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._count_lock:
                left = self._outstanding - (0 if include_retries else len(self._retries))
            if left <= 0:
                return True
            time.sleep(0.01)
        return False

    # -- the worker ------------------------------------------------------------------------------
    def _schedule(self, delay: float, alert_id: int, channel: str, target: str) -> None:
        with self._count_lock:
            self._outstanding += 1
            heapq.heappush(self._retries, (time.monotonic() + delay, next(self._seq), alert_id, channel, target))

    def _run(self) -> None:
        while not self._stop.is_set():
            due = self._retries[0][0] - time.monotonic() if self._retries else None
            if due is not None and due <= 0:
                with self._count_lock:
                    _, _, alert_id, channel, target = heapq.heappop(self._retries)
                self._attempt_safely(alert_id, [(channel, target)])
                self._count(-1)
                continue
            try:
                ids = self._queue.get(timeout=due if due is not None else 1.0)
            except queue.Empty:
                continue
            if ids is None:
                break
            self._attempt_safely(ids, self.channels)
            self._count(-1)

    def _attempt_safely(self, alert_ids: int | list[int], channels: list[tuple[str, str]]) -> None:
        try:
            self._deliver(alert_ids if isinstance(alert_ids, list) else [alert_ids], channels)
        except Exception:  # the worker must survive a store hiccup; the rows stay pending
            log.exception("alert delivery failed unexpectedly")

    def _deliver(self, alert_ids: list[int], channels: list[tuple[str, str]]) -> None:
        items = self.store.alerts(alert_ids=alert_ids, limit=max(1, len(alert_ids)))["items"]
        floor = severity_rank(self.config.min_severity)
        for alert in sorted(items, key=lambda a: a["alert_id"]):
            if severity_rank(alert["severity"]) < floor:
                continue
            for channel, target in channels:
                row = self.store.claim_delivery(alert["alert_id"], channel, target)
                if row["status"] != "pending":
                    continue  # delivered (or given up) already: never twice
                self._attempt(alert, row)

    def _attempt(self, alert: dict[str, Any], row: dict[str, Any]) -> None:
        attempt = int(row["attempts"]) + 1
        self.attempts += 1
        try:
            send(row["channel"], row["target"], alert, self.config)
        except Exception as exc:  # any failure is recorded and retried
            final = attempt >= max(1, self.config.retries)
            delay = min(self.config.backoff_seconds * 2 ** (attempt - 1), self.config.max_backoff_seconds)
            error = f"attempt {attempt}: {type(exc).__name__}: {exc}"
            self.store.record_attempt(
                int(row["delivery_key"]),
                False,
                error,
                final,
                None if final else time.time_ns() // 1000 + int(delay * 1e6),
            )
            if final:
                log.warning(
                    "alert %s: %s delivery given up after %d attempts: %s",
                    alert["alert_id"],
                    row["channel"],
                    attempt,
                    exc,
                )
            else:
                self._schedule(delay, int(alert["alert_id"]), row["channel"], row["target"])
            return
        self.store.record_attempt(int(row["delivery_key"]), True, None, True, None)
