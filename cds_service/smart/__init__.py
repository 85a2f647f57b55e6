"""The SMART on FHIR companion page (issue 23): the patient's mineral trends and the rules'
reasoning, one click from a calciphylaxis card.

A SMART App Launch 2.0 EHR launch (``launch.py``: discovery, authorisation code with PKCE S256
through Authlib), a server-side session that alone holds the access token (``sessions.py``),
the patient's data read with that token from the trusted FHIR server and the engine run on it
(``data.py``), and one server-rendered page with inline SVG charts and no script (``page.py``,
``charts.py``), served by the blueprint in ``views.py``. docs/smart-app.md says how an EHR
registers it.

``register_smart_app`` is the one call the app factory makes. When the app is configured (a
client id and at least one trusted issuer) it registers the blueprint and sets, for every
request, the launch URL that calciphylaxis cards carry as their ``smart`` link
(``cds_service.render.cards.SMART_LAUNCH_URL``); unconfigured, the service has no ``/app`` route
and its cards no such link.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask, g

from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.render.cards import SMART_LAUNCH_URL
from cds_service.smart.launch import Discovery
from cds_service.smart.sessions import MemorySessionStore, RedisSessionStore, SessionStore
from cds_service.smart.views import SmartState, blueprint, launch_url

__all__ = ["register_smart_app", "smart_settings"]

log = logging.getLogger("cds_service.smart")


def smart_settings(settings: Settings) -> Settings:
    """The FHIR access settings of the app's reads: its own trusted servers (the SMART issuers),
    and a budget fit for a page a person waits for (seconds, not a hook call's 0.3 s)."""
    deadline = settings.smart_fhir_deadline
    return settings.model_copy(
        update={
            "fhir_allowed_servers": list(settings.smart_issuers),
            "fhir_deadline": deadline,
            "fhir_connect_timeout": min(2.0, deadline),
            "fhir_read_timeout": min(5.0, deadline),
            "fhir_max_pages": max(settings.fhir_max_pages, 20),
            "fhir_workers": 8,
            "fhir_server_concurrency": 24,
        }
    )


def _store(settings: Settings) -> SessionStore:
    if settings.redis_url:
        prefix = settings.redis_key_prefix.removesuffix("jti:") + "smart:"
        return RedisSessionStore(settings.redis_url, prefix=prefix, timeout=settings.redis_timeout)
    if settings.workers > 1:
        log.warning(
            "SMART app sessions are kept per process: with more than one worker set CDS_REDIS_URL, or a browser's "
            "launch may land on another worker than its callback"
        )
    return MemorySessionStore(settings.smart_max_sessions)


def register_smart_app(app: Flask, settings: Settings, *, now: Callable[[], datetime] | None = None) -> None:
    """When configured (a client id and a trusted issuer), serve the app under ``/app`` and put
    its launch URL on the cards; otherwise do nothing (no route, no link)."""
    if not (settings.smart_client_id and settings.smart_issuers):
        return
    state = SmartState(
        settings=settings,
        store=_store(settings),
        discovery=Discovery(allow_http=settings.fhir_allow_http),
        resolver=PrefetchResolver(smart_settings(settings)),
        now=now or (lambda: datetime.now(UTC)),
    )
    app.extensions["smart"] = state
    app.register_blueprint(blueprint)
    resolver = state.resolver
    assert resolver is not None
    weakref.finalize(app, resolver.close)  # its fetch threads and HTTP pool end with the app

    @app.before_request
    def _card_link() -> None:
        g.smart_link_token = SMART_LAUNCH_URL.set(launch_url())

    @app.teardown_request
    def _card_link_done(exc: BaseException | None) -> None:
        token = g.pop("smart_link_token", None)
        if token is not None:
            with contextlib.suppress(ValueError):  # set in another context: nothing to undo here
                SMART_LAUNCH_URL.reset(token)
