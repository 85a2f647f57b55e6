"""Served-card log and feedback: one interface, SQLite by default."""

from __future__ import annotations

from cds_service.feedback.store import UNKNOWN_RULE, FeedbackStore, RuleReport, SQLiteFeedbackStore, format_report

__all__ = ["UNKNOWN_RULE", "FeedbackStore", "RuleReport", "SQLiteFeedbackStore", "format_report"]
