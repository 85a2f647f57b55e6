"""Served-card log and feedback: one interface, two backends (embedded SQLite by default,
PostgreSQL with ``CDS_DATABASE_URL``), one schema (``migrations/``), and the queue that writes
served-card rows off the request thread (``writer``)."""

from __future__ import annotations

from datetime import timedelta

from cds_service.config import Settings
from cds_service.feedback.postgres import PostgresFeedbackStore
from cds_service.feedback.sqlite import SQLiteFeedbackStore
from cds_service.feedback.store import UNKNOWN_RULE, FeedbackStore, RuleReport, ServedCard, format_report
from cds_service.feedback.writer import ServedCardWriter

__all__ = [
    "UNKNOWN_RULE",
    "FeedbackStore",
    "PostgresFeedbackStore",
    "RuleReport",
    "SQLiteFeedbackStore",
    "ServedCard",
    "ServedCardWriter",
    "format_report",
    "open_store",
    "open_writer",
]


def open_store(settings: Settings) -> PostgresFeedbackStore | SQLiteFeedbackStore:
    """The configured backend (nothing is connected or created until first use)."""
    store: PostgresFeedbackStore | SQLiteFeedbackStore
    if settings.database_url:
        store = PostgresFeedbackStore(
            settings.database_url,
            pool_size=settings.database_pool_size,
            connect_timeout=settings.database_connect_timeout,
        )
    else:
        store = SQLiteFeedbackStore(settings.feedback_db)
    if not settings.snooze_enabled:
        store.snooze_days = {}  # overrides are still stored and reported; they snooze nothing
    return store


def open_writer(store: FeedbackStore, settings: Settings) -> ServedCardWriter:
    days = settings.served_card_retention_days
    return ServedCardWriter(
        store,
        max_queue=settings.served_card_queue_size,
        retention=timedelta(days=days) if days else None,
        purge_interval=settings.served_card_purge_interval_seconds,
    )
