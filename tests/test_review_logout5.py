"""Review of sign-out and sessions (fifth round): each test names a hole found in review and
proves it shut, through the live server."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import Browser
from tests.oidc import token, verify
from tests.test_backchannel import _deliver, _wait_rows, receiver  # noqa: F401 - the fixture
from tests.test_review_logout import _code_flow


def _age_grant(live, sid: str, days: int) -> None:
    """Make the grants of session `sid`, their refresh tokens and the session itself `days`
    old, the session long expired: as a product that signed in that long ago finds them."""
    from sqlalchemy import select, update

    from idp.store import BrowserSession, Grant, RefreshToken, db, utcnow

    then = utcnow() - timedelta(days=days)
    with live.db():
        grants = select(Grant.id).where(Grant.sid == sid)
        db.session.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(grants)).values(created_at=then))
        db.session.execute(update(Grant).where(Grant.sid == sid).values(created_at=then))
        db.session.execute(update(BrowserSession).where(BrowserSession.id == sid).values(
            created_at=then, last_seen_at=then, expires_at=utcnow() - timedelta(days=days - 30)))
        db.session.commit()


def test_sign_out_of_all_sessions_tells_a_product_that_signed_in_long_ago_and_still_refreshes(
        live, receiver):  # noqa: F811
    """An offline grant lives as long as its product keeps refreshing (each rotation gives the
    new refresh token a fresh lifetime), so a product that signed in 40 days ago and refreshed
    today holds the person today. "Sign out of all sessions" (and a disable, a reset, a SCIM
    deactivation: the same function) revokes that grant, and must tell the product by
    back-channel too: before, only grants created in the last 30 days were told, so this
    product kept the person signed in."""
    email, password = "review-logout5-old@example.com", "old-grant-password"
    user_id = live.create_user(email, password)
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url)
    body = _code_flow(live, Browser(live.issuer), client_id, secret, email, password,
                      scope="openid offline_access")
    sid = verify(live.issuer, body["id_token"])[1]["sid"]
    _age_grant(live, sid, days=40)
    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 200, refreshed.text  # the product is still at it today

    browser = Browser(live.issuer)
    browser.sign_in(browser.get(f"{live.issuer}/signin"), email, password)
    done = browser.submit(browser.get(f"{live.issuer}/account"), {},
                          action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    gone = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]},
                 auth=(client_id, secret))
    assert gone.status_code == 400  # the grant is revoked ...

    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: rows and all(r.delivered_at for r in rows))
    claims = [verify(live.issuer, r.logout_token)[1] for r in rows]  # ... and the product told
    assert [(c["sub"], c["aud"], c.get("sid")) for c in claims] == [(user_id, client_id, sid)]


def test_sign_out_tells_a_product_whose_grant_is_old_but_whose_session_is_live(live, receiver):  # noqa: F811
    """A session renewed by the same person's sign-in (prompt=login, max_age, a remembered
    browser) keeps its `sid`, so it can outlive by far the grant a product got from it at
    first, and the product holds the person as long as the session lives. Signing out of
    that session must tell it: before, a grant created more than 30 days ago was skipped
    even when its session was the one just ended."""
    from sqlalchemy import select, update

    from idp.store import Grant, RefreshToken, db, utcnow

    email, password = "review-logout5-live@example.com", "live-session-password"
    user_id = live.create_user(email, password)
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url)
    browser = Browser(live.issuer)
    sid = verify(live.issuer, _code_flow(live, browser, client_id, secret, email, password)["id_token"])[1]["sid"]
    with live.db():  # the grant and its refresh token from 40 days ago; the session went on
        then = utcnow() - timedelta(days=40)
        grants = select(Grant.id).where(Grant.sid == sid)
        db.session.execute(update(RefreshToken).where(RefreshToken.grant_id.in_(grants)).values(created_at=then))
        db.session.execute(update(Grant).where(Grant.sid == sid).values(created_at=then))
        db.session.commit()

    resp = browser.submit(browser.get(f"{live.issuer}/account"), {}, action="/signout")
    assert resp.status_code == 200

    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: rows and all(r.delivered_at for r in rows))
    claims = [verify(live.issuer, r.logout_token)[1] for r in rows]
    assert [(c["sub"], c["aud"], c.get("sid")) for c in claims] == [(user_id, client_id, sid)]


def _org_member_signed_in(live, receiver, tag: str, scope: str | None = None,  # noqa: F811
                          require_mfa: bool = True, member: bool = True):
    """A member of a new org (or, not `member`, a person at its domain) signed in to a
    product (back-channel and post-logout URIs registered) with the password alone; then
    the org starts requiring a second factor (unless told not), so that session stops
    counting. (org id, user id, client id, secret, browser, token response)."""
    from tests.admin_world import PASSWORD, new_org, person

    org_id, _, domain = new_org(live, tag)
    email = f"m-{org_id[:8]}@{domain}"
    user_id = person(live, email, org_id if member else None)
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url,
                                           post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    browser = Browser(live.issuer)
    body = _code_flow(live, browser, client_id, secret, email, PASSWORD, scope=scope)
    _require_mfa(live, org_id, require_mfa)
    return org_id, user_id, client_id, secret, browser, body


def _require_mfa(live, org_id: str, on: bool) -> None:
    from idp.store import Org, db

    with live.db():
        db.session.get(Org, org_id).require_mfa = on
        db.session.commit()


def _refresh(live, client_id: str, secret: str, refresh_token: str):
    return token(live.issuer, {"grant_type": "refresh_token", "refresh_token": refresh_token},
                 auth=(client_id, secret))


def test_signing_out_ends_the_session_the_browser_holds_even_when_it_no_longer_counts(
        live, receiver):  # noqa: F811
    """A session opened before its org required a second factor stops counting, but it is
    still the browser's, its products still hold it, and their online refresh tokens live
    as long as it does. When the person signs out (here RP-initiated, from a product) that
    session must end and its products be told: before, nothing ended (the cookie was only
    dropped), so the products kept the person, refreshing, until the session expired."""
    org_id, user_id, client_id, secret, browser, body = _org_member_signed_in(live, receiver, "logout5-held")
    sid = verify(live.issuer, body["id_token"])[1]["sid"]
    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:9/bye"

    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 400, refreshed.text  # an online grant ends with its session
    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: rows and all(r.delivered_at for r in rows))
    claims = [verify(live.issuer, r.logout_token)[1] for r in rows]
    assert [(c["sub"], c.get("sid")) for c in claims] == [(user_id, sid)]


def test_another_persons_sign_in_ends_the_session_the_browser_holds_even_when_it_no_longer_counts(
        live, receiver):  # noqa: F811
    """The same session (opened before its org required a second factor), and someone else
    signs in on this browser (a shared computer): it must end, and its products be told, as
    any session another person's sign-in replaces. Before, it stayed open beside the new
    one, its products refreshing, until it expired."""
    org_id, user_id, client_id, secret, browser, body = _org_member_signed_in(live, receiver, "logout5-other")
    sid = verify(live.issuer, body["id_token"])[1]["sid"]
    live.create_user("review-logout5-next@example.com", "next-person-password")
    resp = browser.sign_in(browser.get(f"{live.issuer}/signin"), "review-logout5-next@example.com",
                           "next-person-password")
    assert resp.status_code == 200 and "review-logout5-next@example.com" in resp.text

    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 400, refreshed.text
    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: rows and all(r.delivered_at for r in rows))
    claims = [verify(live.issuer, r.logout_token)[1] for r in rows]
    assert [(c["sub"], c.get("sid")) for c in claims] == [(user_id, sid)]


def test_online_refresh_tokens_stop_when_their_session_stops_counting(live, receiver):  # noqa: F811
    """The session a product's online grant came from no longer signs the person in
    anywhere (the org now requires a second factor), yet the product refreshes on it."""
    _, _, client_id, secret, _, body = _org_member_signed_in(live, receiver, "logout5-design")
    refreshed = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                      auth=(client_id, secret))
    assert refreshed.status_code == 400, refreshed.text


def test_online_refresh_tokens_stop_for_a_person_the_org_binds_by_their_address(live, receiver):  # noqa: F811
    """The same, for a person the org binds by their address's domain without being its
    member (`accounts.policy_orgs`): their session stops counting too, and so do the
    product's online tokens."""
    _, _, client_id, secret, _, body = _org_member_signed_in(live, receiver, "logout5-domain", member=False)
    refused = _refresh(live, client_id, secret, body["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text


def test_online_refresh_tokens_stop_for_a_person_at_an_internationalised_domain_of_the_org(
        live, receiver):  # noqa: F811
    """The org's domain is stored in its ASCII form (xn--), the person's address keeps its
    Unicode one: the org binds them all the same (`domain_of`), and their session stops
    counting, and the product's online tokens with it."""
    import re
    import uuid

    import idna

    from tests.admin_world import PASSWORD, person

    name = f"logout5-idn-{uuid.uuid4().hex[:8]}"
    domain = f"bücher-{uuid.uuid4().hex[:6]}.example"
    out = live.idp("orgs", "create", name, "--domain", idna.encode(domain, uts46=True).decode())
    assert out.returncode == 0, out.stderr
    org_id = re.search(r"\(([0-9a-f]+)\)", out.stdout).group(1)
    email = f"m@{domain}"
    person(live, email)
    client_id, secret = live.create_client()
    body = _code_flow(live, Browser(live.issuer), client_id, secret, email, PASSWORD)
    refreshed = _refresh(live, client_id, secret, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    _require_mfa(live, org_id, True)
    refused = _refresh(live, client_id, secret, refreshed.json()["refresh_token"])
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text


def test_a_refused_online_refresh_token_is_not_revoked_and_counts_again_with_its_session(
        live, receiver):  # noqa: F811
    """Refused, not revoked as a reuse would be: the tokens follow their session's standing,
    as the browser's sign-in does (`sessions.current`), so once the org no longer requires
    the factor the very same refresh token works again."""
    org_id, _, client_id, secret, _, body = _org_member_signed_in(live, receiver, "logout5-back")
    assert _refresh(live, client_id, secret, body["refresh_token"]).status_code == 400
    _require_mfa(live, org_id, False)
    again = _refresh(live, client_id, secret, body["refresh_token"])
    assert again.status_code == 200, again.text


def test_offline_refresh_tokens_go_on_when_their_session_stops_counting(live, receiver):  # noqa: F811
    """offline_access is access "when the End-User is not present": the same person's
    offline grant, from the same kind of session, still refreshes once the org requires a
    second factor."""
    _, _, client_id, secret, _, body = _org_member_signed_in(live, receiver, "logout5-offline",
                                                             scope="openid offline_access")
    refreshed = _refresh(live, client_id, secret, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def test_online_refresh_tokens_go_on_for_a_member_of_an_org_without_the_requirement(
        live, receiver):  # noqa: F811
    _, _, client_id, secret, _, body = _org_member_signed_in(live, receiver, "logout5-plain", require_mfa=False)
    refreshed = _refresh(live, client_id, secret, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert _refresh(live, client_id, secret, refreshed.json()["refresh_token"]).status_code == 200


def test_online_refresh_tokens_go_on_when_their_session_passed_a_second_factor(live, receiver):  # noqa: F811
    """A member who signed in with their authenticator app: their session counts under the
    requirement, and the product's online tokens go on."""
    import time

    import pyotp

    from idp.mfa import totp
    from idp.store import User, db
    from tests.admin_world import PASSWORD, new_org, person
    from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params

    org_id, _, domain = new_org(live, "logout5-factor")
    email = f"m-{org_id[:8]}@{domain}"
    user_id = person(live, email, org_id)
    with live.db():
        user = db.session.get(User, user_id)
        app_secret = totp.start_enrolment(user)
        assert totp.confirm_enrolment(user, pyotp.TOTP(app_secret).now())
        db.session.commit()
    client_id, secret = live.create_client()
    browser = Browser(live.issuer)
    verifier, challenge = pkce()
    page = browser.sign_in(browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                                     code_challenge_method="S256")), email, PASSWORD)
    code = pyotp.TOTP(app_secret).at(time.time() + 30)  # the current step was spent enrolling
    params = redirect_params(browser.submit(page, {"code": code}))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    assert "mfa" in verify(live.issuer, body["id_token"])[1]["amr"]
    _require_mfa(live, org_id, True)
    refreshed = _refresh(live, client_id, secret, body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
