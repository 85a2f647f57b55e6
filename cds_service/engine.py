"""From a validated hook call to cards. The clinical engine lands here (issue #3).

``evaluate`` is the one entry point the HTTP layer and the ``evaluate`` command use. It must stay
free of Flask: it receives plain data and returns ``protocol.Card`` objects whose ``rule_id``
names the rule that produced each card.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.prefetch import ResolvedPrefetch
from cds_service.protocol import Card


@dataclass(frozen=True)
class HookCall:
    service_id: str
    hook: str  # "patient-view" | "order-select" | "order-sign"
    hook_instance: str
    context: dict[str, Any]  # raw JSON context (draftOrders, selections, patientId ...)
    prefetch: ResolvedPrefetch  # resolved prefetch data (raw JSON) and what was unavailable
    now: datetime  # timezone-aware "now" (tests freeze it)


def evaluate(call: HookCall) -> list[Card]:
    """No clinical checks yet: a valid request gets no cards (never a placeholder card)."""
    return []
