"""The CDS committee's governance report: per rule, cards served, accepted, overridden and
ignored week by week, override reasons, suggestions taken and snoozes, as one HTML page.

``GovernanceData`` (model.py) is what the page shows, with no patient data in it;
``build_governance_data`` (build.py) counts it from served-card and feedback records;
``render_report`` (report.py) draws the page.
"""

from __future__ import annotations

from cds_service.governance.build import FeedbackRecord, ServedCardRecord, build_governance_data
from cds_service.governance.model import (
    INDICATORS,
    ActiveSnooze,
    GovernanceData,
    Indicator,
    IsoWeek,
    Outcomes,
    RuleIndicatorStats,
    UnservedFeedback,
    WeekCounts,
)
from cds_service.governance.report import render_report

__all__ = [
    "INDICATORS",
    "ActiveSnooze",
    "FeedbackRecord",
    "GovernanceData",
    "Indicator",
    "IsoWeek",
    "Outcomes",
    "RuleIndicatorStats",
    "ServedCardRecord",
    "UnservedFeedback",
    "WeekCounts",
    "build_governance_data",
    "render_report",
]
