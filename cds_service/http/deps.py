"""What the views need, wired once by ``create_app``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from cds_service.auth import Authenticator, ReplayCache
from cds_service.config import Settings
from cds_service.feedback import FeedbackStore, ServedCardWriter
from cds_service.fhir.resolver import PrefetchResolver


@dataclass
class Lifecycle:
    """Whether the process is shutting down (``/ready`` then fails, so a load balancer stops
    sending it calls), and whether the app's resources are closed."""

    draining: threading.Event = field(default_factory=threading.Event)
    closed: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Deps:
    settings: Settings
    store: FeedbackStore
    writer: ServedCardWriter
    resolver: PrefetchResolver
    authenticator: Authenticator
    replay: ReplayCache | None = None  # the shared replay store, checked by /ready when configured
    now: Callable[[], datetime] | None = None  # tests freeze the clock
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
