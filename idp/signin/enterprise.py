"""Enterprise Sign-In: the email's domain sends the browser to the org's SAML IdP, and the
Assertion Consumer Service brings the answer back into the sign-in.

Every refusal is a readable page and a security event with the reason; never a 500.
"""

from __future__ import annotations

import hmac
import logging
import time
from datetime import UTC, datetime, timedelta

from flask import Blueprint, redirect, render_template, request, session, url_for
from sqlalchemy import bindparam

from federation.discovery import domain_of
from federation.saml import CLOCK_SKEW, MAX_RESPONSE_BYTES, SamlError

from .. import audit, orgs
from ..accounts import just_in_time
from ..i18n import gettext as _
from ..ratelimit import throttle
from ..single_use import claim_at_once, take_at_once
from ..store import Org, SamlInbox, User, db, new_id, new_secret, utcnow
from .throttling import wait_message
from .views import first_factor_passed, pending_request

log = logging.getLogger(__name__)
bp = Blueprint("enterprise", __name__)

REQUEST_TTL = 600
INBOX_TTL = timedelta(minutes=2)
# SAML bindings §3.4.3 and §3.5.3: RelayState MUST NOT exceed 80 bytes (ours are 22).
MAX_RELAY_STATE_BYTES = 80
# The base64 of the largest response `ServiceProvider.validate` would read.
MAX_POSTED_RESPONSE = MAX_RESPONSE_BYTES * 4 // 3 + 4
AMR_FEDERATED = ["fed"]
_KEPT_AT_MOST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()  # the latest a spent assertion is remembered


def start_sso(org: Org, req: str | None, fresh: bool = False):
    """Send the browser to the org's IdP with a signed AuthnRequest (HTTP-Redirect); `fresh`:
    with ForceAuthn (`views.fresh_sign_in_asked`)."""
    try:
        relay = new_secret(16)
        request_id, location = orgs.service_provider(org).authn_request(relay_state=relay, force_authn=fresh)
    except Exception as err:  # noqa: BLE001 - a broken org configuration must not give a 500
        log.warning("cannot start SSO for org %s: %s", org.id, err)
        return render_template("error.html", message=_(
            "Your organization's sign-in is not working right now. Try again later.")), 503
    session["saml"] = {"org": org.id, "request_id": request_id, "relay": relay, "req": req, "at": int(time.time()),
                       "fresh": fresh}
    return render_template("signin/sso_redirect.html", location=location, org=org)


@bp.post("/saml/<org_id>/acs")
def acs(org_id: str):
    """The IdP's POST: parked, then a redirect, so the next request carries our cookies.

    Anyone can post here, and a parked response is stored before anything is checked: every
    post counts against the client's address ("saml:ip"), and a post that could never be
    valid is refused whole, with nothing stored.
    """
    # The count rides in the parked row's commit (or the refusal's): one commit, not two.
    # Every way out below commits it, an error included.
    address = request.remote_addr or ""
    decision = throttle().failure("saml:ip", address, commit=False)
    try:
        return _park(org_id, decision)
    except BaseException:
        try:
            db.session.commit()
        except Exception:  # noqa: BLE001 - the error being raised is the one to show
            # the transaction failed whole (a write refused): the count, on its own again
            db.session.rollback()
            throttle().failure("saml:ip", address)
        raise


def _park(org_id: str, decision):
    if not decision.allowed:
        db.session.commit()
        return render_template("error.html", message=wait_message(decision.retry_after)), 429, {
            "Retry-After": str(decision.retry_after)}
    org = orgs.view(org_id[:32])
    response = request.form.get("SAMLResponse")
    relay_state = request.form.get("RelayState")
    if org is None or not org.saml_metadata or not response:
        return refuse_enterprise(None, org, "no SAML response for a known org")
    if len(response) > MAX_POSTED_RESPONSE:
        return refuse_enterprise(None, org, "response too large")
    if relay_state is not None and len(relay_state.encode()) > MAX_RELAY_STATE_BYTES:
        return refuse_enterprise(None, org, "RelayState longer than 80 bytes")
    inbox = new_id()
    db.session.connection().execute(_PARK, {"id": inbox, "org_id": org.id, "saml_response": response,
                                            "relay_state": relay_state, "expires_at": utcnow() + INBOX_TTL})
    db.session.commit()
    return redirect(url_for("enterprise.consume", org_id=org.id, inbox=inbox), code=303)


_INBOX = SamlInbox.__table__
# Table statements built once (no unit of work for one row): the ACS and the consume run on
# every SAML sign-in.
_PARK = _INBOX.insert()
# One statement takes the parked response and spends it: of two requests racing for it, one
# gets the row. An expired one, or another org's, stays for housekeeping.
_TAKE = (_INBOX.delete()
         .where(_INBOX.c.id == bindparam("id"), _INBOX.c.org_id == bindparam("org_id"),
                _INBOX.c.expires_at > bindparam("now"))
         .returning(_INBOX.c.saml_response, _INBOX.c.relay_state))


@bp.get("/saml/<org_id>/acs/<inbox>")
def consume(org_id: str, inbox: str):
    row = take_at_once(_TAKE, {"id": inbox, "org_id": org_id, "now": utcnow()})  # one use, whatever comes next
    if row is None:
        return refuse_enterprise(None, None, "no parked response")
    saml_response, relay_state = row
    org = orgs.view(org_id)
    if org is None:  # the org was deleted since the post
        return refuse_enterprise(None, None, "no parked response")
    from ..admin.enterprise import finish_test, is_test_answer

    if is_test_answer(org, relay_state):  # an admin's Test connection: shown, nobody signed in
        return finish_test(db.session.get(Org, org.id), saml_response)
    state = session.pop("saml", None)
    started_here = (state is not None and state.get("org") == org.id
                    and time.time() - state.get("at", 0) <= REQUEST_TTL)
    # compared as bytes: compare_digest refuses non-ASCII str, and RelayState is the IdP's to send
    if started_here and not hmac.compare_digest(str(state.get("relay", "")).encode(),
                                                (relay_state or "").encode()):
        return refuse_enterprise(None, org, "RelayState does not match")
    outstanding = state["request_id"] if started_here else None
    try:
        since = state["at"] if started_here and state.get("fresh") else None
        identity, assertion_id, not_after = orgs.service_provider(org).validate(saml_response, outstanding, since)
    except SamlError as err:
        return refuse_enterprise(None, org, err.reason)
    if not spend_assertion(org, assertion_id, not_after):
        return refuse_enterprise(None, org, "assertion replayed")
    if domain_of(identity.email) not in org.domains:
        return refuse_enterprise(None, org, "email outside the org's domains")
    # The account, its session and their audit events: one commit (the sign-in's own, or
    # the refusal's event's), and the one below for a sign-in going on to a second factor.
    user = just_in_time(org, identity, commit=False)
    if user is None:
        return refuse_enterprise(None, org, "account disabled or an operator's")
    req = state.get("req") if started_here else None
    pending = pending_request(req) if req else None
    # The session's sign-in time: now for an answer to this browser's request (a fresh one when
    # it was asked for, `since`); the IdP's own AuthnInstant for an unsolicited one, which no
    # request here could ask to be fresh (else the IdP's app portal, in a browser left open,
    # would pass every "sign in again" check).
    authenticated = None if started_here else (identity.auth_time or 0)
    answer = first_factor_passed(user, pending, req, remember=False, amr=AMR_FEDERATED, org=org,
                                 auth_time=authenticated, ends_by=identity.session_ends)
    db.session.commit()
    return answer


def refuse_enterprise(user, org, reason: str, method: str = "saml"):
    log.warning("enterprise sign-in refused for org %s: %s", org.id if org else "-", reason)
    audit.record("signin.failure", user, method=method, org=org.id if org else None, reason=reason)
    return render_template("error.html", message=_(
        "Your organization's sign-in could not be completed. Start again from the application.")), 400


def enforced_for(user: User | None, email: str | None = None) -> bool:
    """True when Enterprise Sign-In is the only way in for this person: the org owning their
    address's domain enforces it, member or not (an account made before its domain joined an
    org is bound by that org's rule all the same).

    Membership alone binds nobody: the org's IdP may only assert addresses at the org's
    domains (`consume`, and the enterprise OpenID callback), so a member whose address is
    elsewhere (an admin added with an outside address, a domain the org removed) would be
    shut out of every way in. They sign in as anyone else, and stay the org's member: the
    domain proven again binds them again. A domain is one org's at most, so the org a
    member at it belongs to is the org asked here, and no query for the membership is
    needed (the password step asks on every sign-in)."""
    from federation.discovery import org_for_email

    for address in {email, user.email if user is not None else None} - {None}:
        org = org_for_email(address)
        if org is not None and org.enforce_sso:
            return True
    return False


def spend_assertion(org: Org, assertion_id: str, not_after: float) -> bool:
    """True the first time an assertion of this org's IdP is used (a sign-in or an admin's
    Test connection alike), False ever after; remembered until it expires (at least 5 min)."""
    # pysaml2 accepts it until NotOnOrAfter plus the clock skew: the marker outlives that, up
    # to a moment a datetime can hold (a "never expires" 9999-12-31T23:59:59Z plus the skew is
    # in year 10000).
    expires = datetime.fromtimestamp(min(not_after + CLOCK_SKEW, _KEPT_AT_MOST), UTC).replace(tzinfo=None)
    # Committed at once on its own, whatever happens next: a spent assertion stays spent.
    return claim_at_once("saml-assertion", f"{org.id}:{assertion_id}",
                         max(expires, utcnow() + timedelta(minutes=5)))
