"""The SMART app's routes, as a blueprint under ``/app``.

* ``GET /app/launch?iss=...&launch=...``: the EHR launch. The issuer must be trusted; its SMART
  configuration is read; a pending session is made (state, PKCE verifier) and the browser is
  sent to the EHR's authorisation endpoint with an HttpOnly session cookie.
* ``GET /app/callback?code=...&state=...``: the EHR's answer. The state must match the session's;
  the code is exchanged (PKCE) for a token; the session, now bound to the launch's patient, gets
  a new id (no fixation) and the browser goes to the page.
* ``GET /app/view?v=<handle>``: the page. ``v`` is a random handle of this launch (not a patient
  identifier): a page left open in another tab after a new launch refuses to show the newer
  launch's patient under the older tab's URL.
* ``GET /app/end``: forget the session now.

Every answer is HTML (a person reads it), carries the page's CSP, ``Cache-Control: no-store``
and ``Referrer-Policy: no-referrer``. The request line logged by the app carries the path only
(never the query: no code, state, launch or handle), plus ``smart`` = the step and its outcome.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from cds_service.calllog import current as current_call
from cds_service.config import Settings
from cds_service.fhir.resolver import PrefetchResolver
from cds_service.smart.data import SCOPE, read_chart
from cds_service.smart.launch import Discovery, LaunchError, authorization_url, exchange_code, issuer_problem
from cds_service.smart.page import HEADER_CSP, message_page, render_page
from cds_service.smart.sessions import PENDING_SECONDS, SessionStore, SessionStoreUnavailable, SmartSession, new_id

log = logging.getLogger("cds_service.smart")

COOKIE = "cds_smart_session"
PREFIX = "/app"
# A FHIR logical id (R4 3.1.0.x): what a token's ``patient`` must look like to be used.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")

blueprint = Blueprint("smart", __name__, url_prefix=PREFIX)


@dataclass
class SmartState:
    settings: Settings
    store: SessionStore
    discovery: Discovery | None
    resolver: PrefetchResolver | None
    now: Callable[[], datetime]

    @property
    def enabled(self) -> bool:
        return bool(self.settings.smart_client_id and self.settings.smart_issuers)

    @property
    def client_id(self) -> str:
        return self.settings.smart_client_id or ""


def state() -> SmartState:
    found: SmartState = current_app.extensions["smart"]
    return found


def app_base() -> str:
    """Where the browser reaches this service: the configured public base URL, else (a loopback
    development server) the address the request came to."""
    bases = state().settings.public_base_url
    return bases[0] if bases else request.host_url.rstrip("/")


def launch_url() -> str:
    return app_base() + PREFIX + "/launch"


def _redirect_uri() -> str:
    return app_base() + PREFIX + "/callback"


# --------------------------------------------------------------------------------------------
# Answers
# --------------------------------------------------------------------------------------------


def _step(outcome: str, **fields: object) -> None:
    """What the request line says of this step (no id, code, token or patient: words and a host)."""
    log_fields = g.get("log")
    if isinstance(log_fields, dict):
        log_fields["smart"] = outcome
        log_fields.update(fields)


def _redirect(location: str, status: int) -> Response:
    return Response(status=status, headers={"Location": location})


def _page(html: str, status: int = 200) -> Response:
    return Response(html, status=status, mimetype="text/html")


def _message(status: int, heading: str, message: str, hint: str = "", outcome: str = "refused") -> Response:
    _step(outcome)
    return _page(message_page(heading, message, hint=hint), status)


_LAUNCH_AGAIN = "Open the patient's chart in the EHR and launch the app again from the card."


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = HEADER_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    return response


@blueprint.errorhandler(LaunchError)
def _launch_error(exc: LaunchError) -> Response:
    return _message(exc.status, "The app could not start", exc.reason, _LAUNCH_AGAIN)


@blueprint.errorhandler(SessionStoreUnavailable)
def _store_down(exc: SessionStoreUnavailable) -> Response:
    record = current_call()
    if record is not None:
        record.fields["smart_store"] = f"unavailable: {exc}"
        record.level = max(record.level, logging.ERROR)
    return _message(
        503, "The app is unavailable", "Its session store cannot be reached right now.", "Try again shortly."
    )


def _set_cookie(response: Response, session_id: str, max_age: int) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=max_age,
        path=PREFIX,
        secure=app_base().startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path=PREFIX, secure=app_base().startswith("https://"), httponly=True, samesite="Lax")


def _current() -> tuple[str, SmartSession] | None:
    session_id = request.cookies.get(COOKIE, "")
    if not session_id or len(session_id) > 128:
        return None
    found = state().store.get(session_id)
    return (session_id, found) if found is not None else None


# --------------------------------------------------------------------------------------------
# Routes
# --------------------------------------------------------------------------------------------


@blueprint.get("/launch")
def launch() -> Response:
    st = state()
    if not st.enabled or st.discovery is None:
        return _message(
            503,
            "The app is not set up",
            "This service has no SMART client id or trusted EHR configured (CDS_SMART_CLIENT_ID, CDS_SMART_ISSUERS).",
        )
    args = request.args
    iss, launch_token = args.get("iss", ""), args.get("launch", "")
    if not launch_token and ("fhirServiceUrl" in args or "patientId" in args):
        return _message(
            400,
            "An open launch is not accepted",
            "The app was opened with a FHIR server and a patient id in its address, without an EHR launch. It reads "
            "the chart only with the EHR's authorisation (SMART EHR launch with iss and launch).",
            "Launch it from an EHR, or a SMART launcher, that performs a SMART EHR launch; see docs/smart-app.md.",
        )
    if not iss or not launch_token:
        return _message(
            400,
            "This page is opened by the EHR",
            "The EHR opens it with the FHIR server (iss) and a launch context (launch); neither can be typed in.",
            _LAUNCH_AGAIN,
        )
    if len(iss) > 2048 or len(launch_token) > 4096:
        return _message(400, "The launch cannot be used", "The launch parameters are too long.", _LAUNCH_AGAIN)
    problem = issuer_problem(iss, st.settings.smart_issuers, allow_http=st.settings.fhir_allow_http)
    if problem:
        return _message(
            403,
            "This EHR is not trusted",
            f"The app reads only from the EHRs it is set up for (CDS_SMART_ISSUERS); this one is not among them "
            f"({problem}).",
        )
    config = st.discovery.configuration(iss)
    previous = _current()
    if previous is not None:  # a new launch replaces this browser's earlier session
        st.store.delete(previous[0])
    session_id, oauth_state, verifier = new_id(), new_id(), new_id()
    redirect_uri = _redirect_uri()
    now = time.time()
    st.store.put(
        session_id,
        SmartSession(
            phase="authorizing",
            iss=iss,
            created=now,
            expires=now + PENDING_SECONDS,
            authorization_endpoint=config.authorization_endpoint,
            token_endpoint=config.token_endpoint,
            redirect_uri=redirect_uri,
            state=oauth_state,
            code_verifier=verifier,
        ),
    )
    target = authorization_url(
        config,
        client_id=st.client_id,
        redirect_uri=redirect_uri,
        scope=SCOPE,
        state=oauth_state,
        code_verifier=verifier,
        launch=launch_token,
        aud=iss,
    )
    response = _redirect(target, 302)
    _set_cookie(response, session_id, PENDING_SECONDS)
    _step("launch: sent to authorize", fhir_host=urlsplit(iss).hostname)
    return response


@blueprint.get("/callback")
def callback() -> Response:
    st = state()
    found = _current()
    if found is None or found[1].phase != "authorizing":
        return _message(
            400,
            "This sign-in is not for an open launch",
            "The launch it belongs to has expired or was already used, or the browser did not keep the app's cookie.",
            _LAUNCH_AGAIN,
        )
    session_id, pending = found
    args = request.args
    if not hmac.compare_digest(args.get("state", "").encode(), pending.state.encode()):
        # Not this launch's answer (forged, or another tab's): refused, and the launch left waiting
        # for its own answer, so a stray request cannot cancel it.
        return _message(400, "This sign-in does not match the launch", "Its state does not match.", _LAUNCH_AGAIN)
    st.store.delete(session_id)  # a verifier and a state are good for one answer only
    if args.get("error"):
        error = args.get("error", "")
        shown = error if re.fullmatch(r"[a-z_]{1,40}", error) else "refused"
        response = _message(403, "The EHR did not authorise the app", f"The EHR answered: {shown}.", _LAUNCH_AGAIN)
        _clear_cookie(response)
        return response
    code = args.get("code", "")
    if not code or len(code) > 4096:
        return _message(400, "This sign-in has no authorisation code", "The EHR sent no code.", _LAUNCH_AGAIN)
    token = exchange_code(
        pending.token_endpoint,
        client_id=st.client_id,
        redirect_uri=pending.redirect_uri,
        code=code,
        code_verifier=pending.code_verifier,
    )
    access_token = token.get("access_token")
    patient = token.get("patient")
    if not isinstance(access_token, str) or not access_token or str(token.get("token_type", "")).lower() != "bearer":
        raise LaunchError("The EHR's token response holds no bearer access token.", 502)
    if not isinstance(patient, str) or not _FHIR_ID.fullmatch(patient):
        raise LaunchError("The EHR gave no patient with the launch: open a patient's chart and launch from there.", 502)
    lifetime = st.settings.smart_session_seconds
    expires_in = token.get("expires_in")
    if isinstance(expires_in, int | float) and expires_in > 0:
        lifetime = min(lifetime, int(expires_in))
    now = time.time()
    scope = token.get("scope")
    ready = SmartSession(
        phase="ready",
        iss=pending.iss,
        created=now,
        expires=now + lifetime,
        access_token=access_token,
        scope=scope if isinstance(scope, str) and scope else SCOPE,
        patient=patient,
        view=new_id(),
        need_patient_banner=token.get("need_patient_banner") is not False,
    ).ready()
    new_session = new_id()
    st.store.put(new_session, ready)
    response = _redirect(f"{PREFIX}/view?v={ready.view}", 303)
    _set_cookie(response, new_session, lifetime)
    _step("callback: authorised")
    return response


@blueprint.get("/view")
def view() -> Response:
    st = state()
    found = _current()
    if found is None or found[1].phase != "ready":
        return _message(401, "The session has ended", "This page's session expired or was ended.", _LAUNCH_AGAIN)
    session = found[1]
    if not hmac.compare_digest(request.args.get("v", "").encode(), session.view.encode()):
        return _message(
            409,
            "This page belongs to another launch",
            "The app was launched again in this browser (perhaps for another patient) since this page was opened.",
            "Use the newest window of the app, or launch it again from the chart you are looking at.",
        )
    assert st.resolver is not None
    chart = read_chart(
        st.resolver,
        iss=session.iss,
        access_token=session.access_token,
        scope=session.scope,
        client_id=st.client_id,
        patient=session.patient,
        now=st.now(),
    )
    if chart.unavailable and len(chart.unavailable) == len(chart.descriptions):
        reasons = sorted(set(chart.unavailable.values()))
        return _message(
            502,
            "The chart could not be read",
            f"The EHR's FHIR server gave none of the data ({'; '.join(reasons)[:200]}).",
            _LAUNCH_AGAIN,
        )
    page = render_page(
        chart,
        source_host=urlsplit(session.iss).hostname or "the EHR",
        expires_at=datetime.fromtimestamp(session.expires, UTC),
        show_banner=session.need_patient_banner,
        end_url=f"{PREFIX}/end",
    )
    _step(f"view: {len(chart.cards)} cards")
    return _page(page)


@blueprint.get("/end")
def end() -> Response:
    found = _current()
    if found is not None:
        state().store.delete(found[0])
    response = _message(
        200,
        "Session ended",
        "The app has forgotten its access token; nothing about the patient is kept.",
        "Close this window, or launch the app again from the EHR.",
        outcome="ended",
    )
    _clear_cookie(response)
    return response


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    code = exc.code or 500
    return _message(code, exc.name, "This address of the app cannot be used this way.", _LAUNCH_AGAIN)


@blueprint.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    """A fault in the app: its type and frames go to the request's log line (never its message,
    which could quote patient data); the browser gets a plain page."""
    record = current_call()
    frames = "".join(traceback.format_tb(exc.__traceback__))
    if record is not None:
        record.fields.update(error=type(exc).__name__, traceback=frames)
        record.level = max(record.level, logging.ERROR)
    else:
        log.error("SMART app error", extra={"error": type(exc).__name__, "traceback": frames})
    return _message(
        500, "The app failed", "Something went wrong in the app; the details are in its log.", outcome="error"
    )
