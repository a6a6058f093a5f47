"""Security review of the account flows (branch review-account): each test shows one
finding through the real server, its browser pages and its token endpoint."""

from __future__ import annotations

import re

import pyotp

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token
from tests.smtp import link_in
from tests.test_second_factor import _code_at, _enrol

PASSWORD = "second-factor-pw"


def _sign_in_again(live, b: Browser, email: str):
    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/signout")
    return b.sign_in(b.get(f"{live.issuer}/account"), email, PASSWORD)


def test_a_trusted_device_dies_with_the_second_factor_it_skipped(live):
    """The device was trusted for the authenticator app that is now removed: the app set up
    after it is asked on that browser too (idp/signin/views.py says trust "dies with the
    factor itself"). Someone who trusted a browser with a factor the owner then replaced
    (a lost or compromised phone) must not skip the new one."""
    email = "review-trust@example.com"
    b, secret, _ = _enrol(live, email)
    page = _sign_in_again(live, b, email)
    assert "Confirm your identity" in page.text
    page = b.submit(page, {"code": _code_at(secret, 1), "trust": "on"})
    assert "Your account" in page.text and "Trusted devices" in page.text
    # the factor is removed (the sign-in with it is recent), and a new app set up
    page = b.submit(page, {}, action=f"{live.issuer}/account/totp/remove")
    assert "Set up authenticator app" in page.text
    setup = b.get(f"{live.issuer}/account/totp")
    new_secret = re.search(r'data-totp-secret="([A-Z2-7]+)"', setup.text).group(1)
    assert new_secret != secret
    assert b.submit(setup, {"code": pyotp.TOTP(new_secret).now()}).status_code == 200
    page = _sign_in_again(live, b, email)
    assert "Confirm your identity" in page.text, "a device trusted for the removed factor skipped the new one"


def test_admin_reset_of_the_second_factor_ends_trusted_devices(live):
    """The Admin Center's "Reset second factor" (a lost phone) must end the trust earned with
    that factor, like removing it from the account page."""
    from idp import accounts
    from idp.store import TrustedDevice, User, db

    email = "review-trust-admin@example.com"
    b, secret, _ = _enrol(live, email)
    page = _sign_in_again(live, b, email)
    b.submit(page, {"code": _code_at(secret, 1), "trust": "on"})
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        accounts.reset_second_factor(user)
        live_devices = db.session.query(TrustedDevice).filter_by(user_id=user.id, revoked_at=None).count()
    assert live_devices == 0


def test_a_code_issued_before_sign_out_of_all_sessions_cannot_be_redeemed_after(live):
    """"Sign out of all sessions" revokes every grant; an authorization code of one of them,
    issued a moment before and not yet exchanged, must not bring tokens afterwards."""
    email = "review-code@example.com"
    live.create_user(email, PASSWORD)
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256",
                               scope="openid offline_access"))
    code = redirect_params(b.sign_in(page, email, PASSWORD))["code"]
    account = b.get(f"{live.issuer}/account")
    done = b.submit(account, {}, action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200 and "signed out" in done.text.lower()
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text


def test_a_code_issued_before_a_reset_that_signs_out_everywhere_is_dead_too(live):
    """The same through the general (Authlib) path: the client authenticates in the form."""
    email = "review-code-reset@example.com"
    live.create_user(email, PASSWORD)
    client_id, secret = live.create_client(token_endpoint_auth_method="client_secret_post")
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    code = redirect_params(b.sign_in(page, email, PASSWORD))["code"]
    from idp.accounts import by_email
    from idp.sessions import sign_out_everywhere
    from idp.store import db

    with live.app.test_request_context("/"):
        sign_out_everywhere(by_email(email))
        db.session.remove()
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier, "client_id": client_id, "client_secret": secret,
                               "extra": "x"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text


def test_a_device_approved_before_sign_out_of_all_sessions_gets_no_tokens_after(live):
    """The device grant's approval is a grant too: "Sign out of all sessions" revoked it, so
    the device's next poll must not turn it into tokens."""
    from tests.test_device import GRANT, _poll, _start

    email = "review-device@example.com"
    live.create_user(email, PASSWORD)
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[GRANT, "refresh_token"],
                                      redirect_uris=[])
    started = _start(live, client_id)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(started["verification_uri_complete"]), email, PASSWORD)
    page = b.submit(page, {"user_code": started["user_code"]})
    assert b.submit(page, {"user_code": started["user_code"], "decision": "allow"}).status_code == 200
    b.submit(b.get(f"{live.issuer}/account"), {}, action=f"{live.issuer}/account/sessions/revoke-all")
    resp = _poll(live, client_id, started["device_code"])
    assert resp.status_code == 400 and resp.json()["error"] in ("access_denied", "invalid_grant"), resp.text


def test_links_mailed_to_an_address_die_when_the_directory_changes_it(live):
    """The org's directory renames a person (SCIM userName): the invitation and reset links
    mailed to the old address name a mailbox that is no longer theirs (a reassigned mailbox,
    a corrected typo) and must not set the password of the account at its new address."""
    from tests.test_scim import Directory

    d = Directory(live, "rename")
    old, new = d.email("old-name"), d.email("new-name")
    uid = d.create(old)["id"]
    invite = link_in(live.mailbox.wait_for(old)[0], live.issuer)
    b = Browser(live.issuer)
    page = b.get(f"{live.issuer}/password/forgot")
    b.submit(page, {"email": old})
    reset = {link_in(m, live.issuer) for m in live.mailbox.wait_for(old, 2)} - {invite}
    (reset,) = reset
    resp = d.patch(f"/Users/{uid}", {"op": "replace", "path": "userName", "value": new})
    assert resp.status_code == 200, resp.text
    for link in (invite, reset):
        page = Browser(live.issuer).get(link)
        assert page.status_code == 400, f"{link} still opens after the address changed"


def test_an_invitation_dies_once_the_password_was_set_another_way(live):
    """The invitee set a password through "Forgot password?" (or later changed it): the
    week-long invitation must not set it again, as a reset link would not."""
    from tests.test_scim import Directory

    d = Directory(live, "invited")
    email = d.email("invitee")
    d.create(email)
    invite = link_in(live.mailbox.wait_for(email)[0], live.issuer)
    b = Browser(live.issuer)
    b.submit(b.get(f"{live.issuer}/password/forgot"), {"email": email})
    (reset,) = {link_in(m, live.issuer) for m in live.mailbox.wait_for(email, 2)} - {invite}
    done = b.submit(b.get(reset), {"password": "the invitee's own 1"})
    assert done.status_code == 200 and "Password changed" in done.text
    page = Browser(live.issuer).get(invite)
    assert page.status_code == 400, "the invitation still sets the password after it was set by a reset"
