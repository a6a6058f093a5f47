"""The authorization endpoint: one path in (/authorize), one path out (a code or an error).

A valid request that needs the person is saved as a `PendingAuthorization` bound to
this browser (`idp.pending`); a finished sign-in runs the same steps again in its own
request (`answer_signed_in`), consent in its own POST, and the steps that show a link
instead of going on (passkeys, the recovery codes page), and older links, come back to
`/authorize/resume/<id>`, which does the same. Consent given on the screen counts only for the
account that gave it, and only in the browser that started the request.
"""

from __future__ import annotations

import time
from datetime import UTC

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError
from authlib.oidc.core.errors import (
    ConsentRequiredError,
    InteractionRequiredError,
    LoginRequiredError,
)
from flask import Blueprint, current_app, redirect, render_template, request, session, url_for
from flask_babel import refresh as refresh_locale
from sqlalchemy import select

from .. import pending as pending_requests
from .. import sessions
from ..assurance import ACR_MULTI_FACTOR, wants_second_factor
from ..client_policy import web_host
from ..i18n import gettext as _
from ..i18n import remember_ui_locales
from ..mfa import has_second_factor
from ..oauth.authorization import (
    SIGN_IN_PROMPTS,
    StoredAuthorizationRequest,
    duplicated_parameter,
    hinted_subject,
    request_params,
    run_checks,
)
from ..oauth.request_objects import error_redirect_uri, front_channel_parameters
from ..oauth.resources import check_authorization_resources
from ..pending import PendingRequest
from ..security import as_get, error_page
from ..signin.views import email_page, start_step_up
from ..store import Client, Consent, PendingAuthorization, db, dialect_insert, utcnow
from .par import REQUEST_URI_PREFIX, take_pushed_request

bp = Blueprint("authorize", __name__)

def _expired():
    return error_page(_("This sign-in request has expired. Go back to the application and start again."))


def _server():
    return current_app.extensions["idp.oauth"]


def _issuer() -> str:
    return current_app.extensions["idp.settings"].issuer


@bp.route("/authorize", methods=["GET", "POST"])
def authorize():
    if request.method == "POST":
        # OIDC Core §3.1.2.1: products may post the request (CSRF-exempt for that).
        return as_get()
    duplicate = duplicated_parameter(request.values)
    if duplicate:
        return error_page(_("The application sent an invalid sign-in request (%(name)s repeated).", name=duplicate))
    params = request_params(request.values)
    if str(params.get("request_uri", "")).startswith(REQUEST_URI_PREFIX):
        pending = take_pushed_request(params["request_uri"], params.get("client_id"))
        if pending is None:
            return _expired()
        return _process(pending.params, pending=pending_requests.bind(pending))
    # Not pushed: the client's PAR policy, then its request object (RFC 9101) if any.
    client = _server().query_client(params.get("client_id"))
    try:
        params = front_channel_parameters(params, client)
    except OAuth2Error as error:
        error.redirect_uri = error_redirect_uri(params, client)
        return _error_redirect(error, StoredAuthorizationRequest(params, request.url), params)
    return _process(params, pending=None)


@bp.get("/authorize/resume/<pending_id>")
def resume(pending_id: str):
    pending = pending_requests.find(pending_id)
    if pending is None:  # unknown, expired, or started in another browser
        return _expired()
    return _process(pending.params, pending=pending)


def answer_signed_in(pending: PendingRequest | None):
    """What `resume` would answer next, given in the sign-in's own request (one round trip
    fewer): the code, the consent page, a step-up or the error redirect. The sign-in is
    committed already; `sessions.current()` is its new session, whose cookie is set on this
    answer as on any, and `pending` is the request as `pending.mark_signed_in` left it
    (None, as `find` would give resume: gone, expired or not this browser's)."""
    if pending is None:
        return _expired()
    sessions.recheck_started()
    return _process(pending.params, pending=pending)


@bp.post("/authorize/consent/<pending_id>")
def consent(pending_id: str):
    pending = pending_requests.find(pending_id)
    browser = sessions.current()
    if pending is None or browser is None:
        return _expired()
    if request.form.get("decision") != "allow":
        oauth_request = StoredAuthorizationRequest(pending.params, request.url)
        pending_requests.delete(pending)
        return _error_redirect(AccessDeniedError(), oauth_request, pending.params)
    client = _server().query_client(pending.client_id)
    if client is None:
        return _expired()
    # What the screen listed: the request's scopes narrowed to the client's registration,
    # as Authlib narrowed them when it was shown. The rest were never shown, so never
    # consented to: the client may have widened its registration since (RFC 7592), even
    # while the person read the screen.
    scope = set(client.get_allowed_scope(pending.params.get("scope")).split()) & _take_shown(pending.id)
    _remember_consent(browser.user_id, pending.client_id, scope)
    pending = pending_requests.mark_consented(pending, browser.user_id)
    db.session.commit()
    return _process(pending.params, pending=pending)


_CONSENTS = Consent.__table__
# In the flow cookie: the scopes each of this browser's latest consent screens listed, as
# [request id, scope] pairs, newest last (a few tabs at once; a list, as the cookie's JSON
# sorts a dict's keys). The cookie is started afresh at every sign-in and sign-out, so a
# screen shown to one account is never answered for another.
SHOWN_SCOPES = "consent_shown"
KEPT_SCREENS = 8


def _screens(pending_id: str) -> tuple[list, str]:
    """(the other requests' screens, the scope `pending_id`'s screen listed: "" if none)."""
    screens = session.get(SHOWN_SCOPES) or []
    return [s for s in screens if s[0] != pending_id], next((s[1] for s in screens if s[0] == pending_id), "")


def _note_shown(pending_id: str, scopes: list[str]) -> None:
    others, _ = _screens(pending_id)
    session[SHOWN_SCOPES] = [*others, [pending_id, " ".join(scopes)]][-KEPT_SCREENS:]


def _take_shown(pending_id: str) -> set[str]:
    """The scopes the consent screen of `pending_id` listed, forgotten as it is answered."""
    others, shown = _screens(pending_id)
    session[SHOWN_SCOPES] = others
    return set(shown.split())


def _remember_consent(user_id: str, client_id: str, scope: set[str]) -> None:
    """Add `scope` to what the account allowed the client (the caller commits). The row is
    made by an insert that does nothing when it is there, then read locked: answers given at
    once (two tabs, two servers) neither break the row's key nor lose each other's scopes
    (PostgreSQL: the insert waits for another's, the lock for another's update; SQLite: the
    insert takes the one write lock)."""
    key = {"user_id": user_id, "client_id": client_id}
    db.session.execute(dialect_insert(db.engine.dialect.name)(_CONSENTS)
                       .values(**key, scope="", updated_at=utcnow())
                       .on_conflict_do_nothing(index_elements=[_CONSENTS.c.user_id, _CONSENTS.c.client_id]))
    row = db.session.execute(select(Consent).filter_by(**key).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one()
    row.scope = " ".join(sorted(scope | set(row.scope.split())))


def _process(params: dict, pending: PendingRequest | PendingAuthorization | None):
    server = _server()
    oauth_request = StoredAuthorizationRequest(params, request.url)
    browser = sessions.current()
    user = browser.user if browser else None
    try:
        grant = server.get_consent_grant(oauth_request, end_user=user)
    except OAuth2Error as error:
        return _error_redirect(error, oauth_request, params)
    try:
        run_checks(params)
        check_authorization_resources(params, oauth_request.client)
    except OAuth2Error as error:
        error.redirect_uri = grant.redirect_uri  # client and redirect URI are proven by now
        return _error_redirect(error, oauth_request, params)
    remember_ui_locales(params.get("ui_locales"))

    prompts = set(params.get("prompt", "").split())
    just_signed_in = pending is not None and browser is not None and pending.authenticated_session_id == browser.id
    needs_login = browser is None or (bool(prompts & SIGN_IN_PROMPTS) and not just_signed_in)
    if browser is not None and "id_token_hint" in params and hinted_subject(params) != browser.user_id:
        # The product expects the account its hint names: another one signed in is no answer,
        # and neither is another one signing in for this request (OIDC Core §3.1.2.1).
        if just_signed_in:
            return _error_redirect(LoginRequiredError(), oauth_request, params)
        needs_login = True
    max_age = params.get("max_age")
    if browser is not None and max_age is not None and not just_signed_in:
        if time.time() - browser.auth_time > int(max_age):
            needs_login = True
    if needs_login:
        if "none" in prompts:
            return _error_redirect(LoginRequiredError(), oauth_request, params)
        if pending is None and request.method == "GET":
            # A fresh request, GET: the email page itself, as /signin?req=… would show it (a
            # round trip fewer). The rest keep the redirect: a pushed request is spent by its
            # first use (a reload of /authorize would find it gone), a POST is not reloaded,
            # and resume or a finished sign-in have their own URL to leave.
            pending = pending_requests.save(params, oauth_request.client.client_id)
            # The language may have been chosen a moment ago (remember_ui_locales, from a
            # request object's ui_locales): the page is rendered in it.
            refresh_locale()
            return email_page(pending)
        pending = pending or pending_requests.save(params, oauth_request.client.client_id)
        return redirect(url_for("signin.email", req=pending.id))

    # A product asking for multi-factor assurance, or for a recent sign-in (max_age), gets
    # the account's second factor again when the session's is missing or older than asked.
    asks_factor = wants_second_factor(params) or max_age is not None
    factor_now = just_signed_in and browser.mfa_time is not None and \
        browser.mfa_time >= int(pending.created_at.replace(tzinfo=UTC).timestamp())
    # A factor just set up counts as passed (mfa_time) but leaves acr at one factor: a
    # product asking for two gets the code asked, not an answer saying one.
    factor_enough = (factor_now or _second_factor_fresh(browser, max_age)) and \
        (browser.acr == ACR_MULTI_FACTOR or not wants_second_factor(params))
    if asks_factor and not factor_enough and has_second_factor(browser.user):
        if "none" in prompts:
            return _error_redirect(InteractionRequiredError(), oauth_request, params)
        pending = pending or pending_requests.save(params, oauth_request.client.client_id)
        return start_step_up(browser, pending)

    client: Client = oauth_request.client
    if not client.first_party:
        # Consent given on this request's screen counts for the account that gave it only.
        # It covers what the screen listed only: scopes the client's registration gained
        # since are asked for again.
        consented = pending is not None and pending.consented_user_id == browser.user_id
        row = db.session.get(Consent, (browser.user_id, client.client_id))
        covered = row is not None and set(oauth_request.scope.split()) <= set(row.scope.split())
        asks_screen = "consent" in prompts or not _remembered_consent_answers(client, grant.redirect_uri)
        if not covered or (asks_screen and not consented):
            if "none" in prompts:
                return _error_redirect(ConsentRequiredError(), oauth_request, params)
            pending = pending or pending_requests.save(params, client.client_id)
            _note_shown(pending.id, oauth_request.scope.split())
            return render_template(
                "signin/consent.html", client=client, scopes=oauth_request.scope.split(), pending=pending,
                user=browser.user, host=web_host(params.get("redirect_uri", "")),
            )

    # The request is spent in the same commit that saves its code; an error answer saved
    # no code, and the request is spent all the same (nothing left to commit otherwise).
    pending_requests.delete(pending, commit=False)
    # `get_consent_grant` above validated this very request (the same params, from the
    # pending row on resume, never from the browser) in this request; Authlib's response
    # would validate it all again (client, redirect URI, scope, PKCE, nonce), so the
    # grant answers with the redirect URI that validation proved. Its hooks still run.
    validated_redirect_uri = grant.redirect_uri
    grant.validate_authorization_request = lambda: validated_redirect_uri
    response = server.create_authorization_response(request=oauth_request, grant_user=browser.user, grant=grant)
    if db.session().in_transaction():  # the code's save committed already; an error answer did not
        db.session.commit()
    return response


def _remembered_consent_answers(client: Client, redirect_uri: str) -> bool:
    """Whether consent remembered from earlier requests may answer this one without the screen.

    RFC 8252 §8.6: a native app's request SHOULD NOT be processed automatically unless the
    client's identity is assured. A public client sending its code to loopback (any port,
    §7.3) or to a private-use scheme (§7.1) cannot be told from any other program on the
    device, which may send the person here with the app's client_id, its own port and its own
    PKCE: such a request gets the screen every time (and `prompt=none` consent_required). A
    claimed https URI (§7.2) proves the app as a secret proves a confidential client.
    Registration allows http only on loopback (`idp.clients._check_uri`), so any scheme but
    https is one of the two; plain string checks, as this runs on every signed-in request.
    """
    return not client.is_public or redirect_uri[:8].lower() == "https://"


def _second_factor_fresh(browser, max_age: str | None) -> bool:
    """The session passed a second factor, recently enough for `max_age` when one is given."""
    if browser.mfa_time is None:
        return False
    return max_age is None or time.time() - browser.mfa_time <= int(max_age)


# Errors raised by our own steps, after the client and its redirect URI were proven.
ANSWERED_BY_REDIRECT = (LoginRequiredError, ConsentRequiredError, InteractionRequiredError, AccessDeniedError)


def _error_redirect(error: OAuth2Error, oauth_request, params: dict):
    """Send the error back to the client when its redirect URI is proven, else show a page.

    Never redirect to an unverified URI (RFC 9700 §4.11: no open redirector).
    """
    redirect_uri = error.redirect_uri
    if redirect_uri is None and not isinstance(error, ANSWERED_BY_REDIRECT):
        return error_page(_("The application sent an invalid sign-in request."),
                          detail=f"{error.error}: {error.description}" if error.description else error.error)
    if redirect_uri is None:
        redirect_uri = params.get("redirect_uri")
        client = oauth_request.client or _server().query_client(params.get("client_id"))
        if not redirect_uri or client is None or not client.check_redirect_uri(redirect_uri):
            return error_page(_("The application sent an invalid sign-in request."))
    out = [("error", error.error)]
    if error.description:
        out.append(("error_description", error.description))
    if params.get("state"):
        out.append(("state", params["state"]))
    out.append(("iss", _issuer()))
    return redirect(add_params_to_uri(redirect_uri, out), code=302)
