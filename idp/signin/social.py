"""Social sign-in and linking, our side: start the upstream flow, take its answer, decide.

A social identity signs someone in only once it was linked from the signed-in
account page; an unknown identity gets a page explaining how to link it, and
nothing is created.
"""

from __future__ import annotations

import hmac
import logging
import time

from flask import Blueprint, redirect, render_template, request, session, url_for

from federation.social import (
    UpstreamError,
    authorization_url,
    can_ask_fresh_sign_in,
    check_response_issuer,
    complete,
)

from dataclasses import replace

from .. import accounts, audit, notices, orgs, outbound, sessions, social
from ..i18n import gettext as _
from ..store import Org
from ..store import new_secret
from .views import (
    first_factor_passed,
    fresh_sign_in_asked,
    pending_request,
    require_recent_sign_in,
    require_sign_in,
    signed_in_recently,
)

log = logging.getLogger(__name__)
bp = Blueprint("social", __name__)

FLOW_TTL = 600
AMR_FEDERATED = ["fed"]  # signed in through a linked external account


def _page(message: str, status: int = 400, link_account: bool = False, label: str | None = None):
    return render_template("signin/social_error.html", message=message, link_account=link_account,
                           label=label), status


def _start(name: str, purpose: str, req: str | None, login_hint: str | None = None,
           session_id: str | None = None, fresh: bool = False):
    try:
        provider = social.load(name)
    except UpstreamError as err:
        log.warning("social provider %s unavailable: %s", name, err)
        return _page(_("%(provider)s cannot be reached right now. Try again later or sign in another way.",
                       provider=name.title()), 503)
    # An org's enterprise provider is reached from the email step only, never as a social button.
    if provider is None or (purpose != "enterprise") == social.is_enterprise(name):
        return _page(_("This sign-in method is not available."), 404)
    state, nonce, verifier = new_secret(24), new_secret(24), new_secret(48)
    # Confirming it is them (`require_recent_sign_in`), a product's prompt=login or max_age
    # (`fresh`, from the email step for an org's own provider), or a link (a new way in, bound
    # to the person present as a passkey is): the provider's own session, open in the same
    # browser, proves nothing about who sits at it now. A link with a provider that cannot be
    # asked for a fresh sign-in (Google, Microsoft) goes through its account chooser instead:
    # the person picks the account knowingly (asked to, Google would refuse the request).
    fresh = fresh or (purpose in ("signin", "enterprise") and "reauth" in session)
    choose = False
    if purpose == "link":
        fresh = can_ask_fresh_sign_in(provider)
        choose = not fresh
    session["social"] = {"provider": name, "state": state, "nonce": nonce, "verifier": verifier,
                         "purpose": purpose, "req": req, "at": int(time.time()), "session": session_id,
                         "fresh": fresh}
    return redirect(authorization_url(provider, social.redirect_uri(name), state, nonce, verifier, login_hint,
                                      fresh=fresh, choose=choose))


def start_enterprise(org, email: str, req: str | None, fresh: bool = False):
    """An org's enterprise OpenID provider: the same upstream flow, its answer decided like SAML's;
    `fresh` (`views.fresh_sign_in_asked`): the provider must authenticate the person now."""
    return _start(social.enterprise_provider_name(org.id), "enterprise", req, login_hint=email, fresh=fresh)


@bp.get("/social/<name>/start")
def start(name: str):
    req = request.args.get("req")
    pending = pending_request(req) if req else None
    if req and pending is None:
        return _page(_("This sign-in request has expired. Go back to the application and start again."))
    # A product's prompt=login or max_age asks the provider too, as the email step asks an org's.
    return _start(name, "signin", req, fresh=fresh_sign_in_asked(pending))


@bp.post("/account/connected/<name>/link")
def link(name: str):
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("account.home"))
    if not signed_in_recently(browser):  # a linked account is a way in: prove it is you first
        return require_recent_sign_in(browser, url_for("account.home"))
    if not accounts.social_allowed(browser.user):
        return _social_forbidden()
    # Not counted against the hour's changes here: a link started is not made (`_finish_link`).
    return _start(name, "link", None, session_id=browser.id)


def _social_forbidden():
    return _page(_("Your organization does not allow social accounts. Sign in with your email."), 403)


@bp.get("/social/<name>/callback")
def callback(name: str):
    flow = session.pop("social", None)
    state = request.args.get("state", "").encode()  # bytes: compare_digest raises on a non-ASCII str
    if not flow or flow.get("provider") != name or time.time() - flow.get("at", 0) > FLOW_TTL \
            or not hmac.compare_digest(flow["state"].encode(), state):
        return _page(_("This sign-in could not be completed (it expired or did not start here). Start again."))
    if request.args.get("error"):
        return _page(_("You cancelled the sign-in with %(provider)s.", provider=name.title()), 400)
    try:
        provider = social.load(name)
        if provider is None:
            return _page(_("This sign-in method is not available."), 404)
        check_response_issuer(provider, request.args.get("iss"))
        identity = complete(provider, request.args.get("code", ""), social.redirect_uri(name), flow["verifier"],
                            flow["nonce"], outbound.current(), fresh_since=flow["at"] if flow.get("fresh") else None)
    except UpstreamError as err:
        log.warning("social sign-in with %s refused: %s", name, err)
        if err.reason == "unavailable":
            return _page(_("%(provider)s cannot be reached right now. Try again later or sign in another way.",
                           provider=name.title()), 503)
        return _page(_("%(provider)s did not confirm who you are. Try again.", provider=name.title()))
    if provider.issuer and not social.spend_nonce(flow["nonce"]):
        return _page(_("%(provider)s did not confirm who you are. Try again.", provider=name.title()))
    if flow["purpose"] == "link":
        return _finish_link(provider.label, identity, flow.get("session"))
    if flow["purpose"] == "enterprise":
        return _finish_enterprise(name, identity, flow.get("req"))
    return _finish_sign_in(provider.label, identity, flow.get("req"))


def _finish_link(label: str, identity, started_by: str | None):
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("account.home"))
    # Only for the session that asked: a flow cookie planted in another signed-in browser
    # would otherwise link the planter's upstream account to that browser's account.
    if started_by is None or started_by != browser.id:
        return _page(_("This sign-in could not be completed (it expired or did not start here). Start again."))
    if not signed_in_recently(browser):  # the way in is added now, as /account's factors are checked when added
        return require_recent_sign_in(browser, url_for("account.home"))
    if not accounts.social_allowed(browser.user):  # the org may have said so since the link started
        return _social_forbidden()
    over = notices.refused(browser.user)
    if over:
        return over
    linked, new = social.link(browser.user, identity)
    if linked is None:
        notices.unchanged()
        return _page(_("This %(provider)s account is already linked to another account.", provider=label), 409)
    if new:  # linked again, as it was: no change to tell (its "Not you?" link would undo the old one)
        notices.record("social.linked", browser.user, added=f"link:{linked.id}", provider=identity.provider)
    else:
        notices.unchanged()
    return redirect(url_for("account.home"))


def _finish_sign_in(label: str, identity, req: str | None):
    pending = pending_request(req) if req else None
    if req and pending is None:
        return _page(_("This sign-in request has expired. Go back to the application and start again."))
    user = social.linked_user(identity)
    if user is None:
        audit.record("signin.failure", None, method="fed", provider=identity.provider)
        return _page(_("This %(provider)s account is not linked to an account here. Sign in with your email "
                       "and password, then link %(provider)s from your account page.", provider=label),
                     403, link_account=True, label=label)
    return first_factor_passed(user, pending, req, remember=False, amr=AMR_FEDERATED)


def _finish_enterprise(name: str, identity, req: str | None):
    """Same rules as SAML: a verified email in the org's domains, account just in time."""
    from federation.discovery import domain_of

    from ..accounts import just_in_time
    from ..emails import normalize
    from ..store import SocialProvider, db
    from .enterprise import refuse_enterprise

    row = db.session.get(SocialProvider, name)
    org = db.session.get(Org, row.org_id) if row is not None and row.org_id else None
    if org is None:
        return _page(_("This sign-in method is not available."), 404)
    email = normalize(identity.email)
    if email is None or not identity.email_verified:
        return refuse_enterprise(None, org, "no verified single email from the enterprise OpenID provider", "oidc")
    identity = replace(identity, email=email)
    if domain_of(identity.email) not in orgs.domains_of(org):
        return refuse_enterprise(None, org, "email outside the org's domains", "oidc")
    user = just_in_time(org, identity, method="oidc")
    if user is None:
        return refuse_enterprise(None, org, "account disabled or an operator's", "oidc")
    pending = pending_request(req) if req else None
    return first_factor_passed(user, pending, req, remember=False, amr=AMR_FEDERATED, org=org)


@bp.post("/account/connected/<link_id>/unlink")
def unlink(link_id: str):
    browser = sessions.current()
    if browser is None:
        return require_sign_in(url_for("account.home"))
    if not signed_in_recently(browser):
        return require_recent_sign_in(browser, url_for("account.home"))
    over = notices.refused(browser.user)
    if over:
        return over
    result = social.unlink(browser.user, link_id)
    if result != "ok":  # nothing unlinked
        notices.unchanged()
    if result == "last":
        return _page(_("This is the only way into your account: set a password or add a passkey first."), 409)
    if result == "ok":
        notices.record("social.unlinked", browser.user)
    return redirect(url_for("account.home"))
