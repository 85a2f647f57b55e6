"""What the resolver hands on: each declared prefetch key's data, and what could not be had.

Kept apart from the resolver (which fetches) so that the readers of the chart, one layer down
from it, can take it as a typed input without importing the code that obtains it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResolvedPrefetch:
    """One value per declared key (a resource, a Bundle, or ``None`` = the EHR has no such
    data), plus the keys that could not be obtained (optional data the cards must admit to
    missing). The values are raw FHIR JSON as sent or fetched: nothing has been screened for
    identity yet (``patient.chart.read_chart`` does that, resource by resource)."""

    data: dict[str, Any]
    unavailable: dict[str, str]
    # Keys whose data is present but known to be partial (e.g. a later page could not be read,
    # a referenced Medication could not be read): key -> short reason.
    incomplete: dict[str, str] = field(default_factory=dict)
    # Keys obtained (wholly or partly) from the FHIR server rather than from prefetch.
    fetched: frozenset[str] = frozenset()
