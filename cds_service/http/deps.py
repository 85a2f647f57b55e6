"""What the views need, wired once by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cds_service.auth import Authenticator
from cds_service.config import Settings
from cds_service.feedback import FeedbackStore
from cds_service.fhir.resolver import PrefetchResolver


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: FeedbackStore
    resolver: PrefetchResolver
    authenticator: Authenticator
    now: Callable[[], datetime] | None = None  # tests freeze the clock
