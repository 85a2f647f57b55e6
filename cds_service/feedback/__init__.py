"""Served-card log and feedback: one interface, two backends (embedded SQLite by default,
PostgreSQL with ``CDS_DATABASE_URL``), one schema (``migrations/``), the queue that writes
served-card rows off the request thread (``writer``), the caller's scope every row carries
(``scope``) and the circuit that keeps a store that is down from slowing hook calls (``guard``)."""

from __future__ import annotations

from datetime import timedelta

from cds_service.config import Settings
from cds_service.feedback.postgres import PostgresFeedbackStore
from cds_service.feedback.scope import UNAUTHENTICATED, scope_of
from cds_service.feedback.sqlite import SQLiteFeedbackStore
from cds_service.feedback.store import (
    UNKNOWN_RULE,
    FeedbackResult,
    FeedbackStore,
    RuleReport,
    ServedCard,
    check_feedback_bounds,
    format_report,
)
from cds_service.feedback.writer import ServedCardWriter

__all__ = [
    "UNAUTHENTICATED",
    "UNKNOWN_RULE",
    "FeedbackResult",
    "FeedbackStore",
    "PostgresFeedbackStore",
    "RuleReport",
    "SQLiteFeedbackStore",
    "ServedCard",
    "ServedCardWriter",
    "check_feedback_bounds",
    "format_report",
    "open_store",
    "open_writer",
    "scope_of",
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
    store.max_per_card = settings.feedback_max_per_card
    store.unserved_per_day = settings.feedback_unserved_per_day
    store.hook_timeout = settings.snooze_lookup_timeout
    return store


def open_writer(store: FeedbackStore, settings: Settings) -> ServedCardWriter:
    days = settings.served_card_retention_days
    feedback_days = settings.feedback_retention_days
    return ServedCardWriter(
        store,
        max_queue=settings.served_card_queue_size,
        retention=timedelta(days=days) if days else None,
        feedback_retention=timedelta(days=feedback_days) if feedback_days else None,
        purge_interval=settings.served_card_purge_interval_seconds,
        # Another process may get the override of a card this one served: write such cards'
        # rows before answering (PostgreSQL: other replicas; SQLite: other worker processes).
        write_through=bool(settings.database_url) or settings.workers > 1,
    )
