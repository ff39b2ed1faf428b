"""Alerts: rules evaluated on ingest (:mod:`.rules`, :mod:`.engine`), their configuration
(:mod:`.config`) and delivery to webhooks, Slack and email (:mod:`.delivery`)."""

from __future__ import annotations

from .config import AlertRules, Channels, load_rules
from .delivery import DeliveryWorker
from .engine import AlertEngine

__all__ = ["AlertEngine", "AlertRules", "Channels", "DeliveryWorker", "load_rules"]
