"""Forgot password: same answer for every address, a single-use link by real mail, a new password."""

from __future__ import annotations

import re

import requests

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token
from tests.smtp import body_of, link_in


def _ask(live, email, lang="en"):
    b = Browser(live.issuer, lang)
    page = b.get(f"{live.issuer}/password/forgot")
    assert 'name="email"' in page.text
    return b.submit(page, {"email": email})


def test_same_answer_for_known_and_unknown_addresses(live):
    live.create_user("known-reset@example.com", "old-password-1")
    known = _ask(live, "known-reset@example.com")
    unknown = _ask(live, "nobody-reset@example.com")
    assert known.status_code == unknown.status_code == 200
    def strip(html, email):
        html = re.sub(r'name="csrf_token" value="[^"]+"', "", html)
        return re.sub(r'name="csrf-token" content="[^"]+"', "", html).replace(email, "EMAIL")

    assert strip(known.text, "known-reset@example.com") == strip(unknown.text, "nobody-reset@example.com")
    assert live.mailbox.wait_for("known-reset@example.com")
    assert live.mailbox.to("nobody-reset@example.com") == []


def test_reset_journey_and_link_rules(live):
    live.create_user("reset@example.com", "old-password-1")
    _ask(live, "reset@example.com")
    first = link_in(live.mailbox.wait_for("reset@example.com", 1)[-1], live.issuer)
    _ask(live, "reset@example.com")
    links = {link_in(m, live.issuer) for m in live.mailbox.wait_for("reset@example.com", 2)}
    (second,) = links - {first}  # mail leaves on a background thread: order is not guaranteed
    assert first != second and second.startswith(f"{live.issuer}/password/reset/")
    b = Browser(live.issuer)
    assert b.get(first).status_code == 400  # a newer link killed the older one
    page = b.get(second)
    assert page.status_code == 200 and "New password" in page.text and "Sign out of all sessions" in page.text
    for weak in ("short", "password1", "reset@example.com"):
        resp = b.submit(page, {"password": weak})
        assert resp.status_code == 400 and 'role="alert"' in resp.text, weak
    done = b.submit(page, {"password": "brand-new-password-7"})
    assert done.status_code == 200 and "Password changed" in done.text
    assert b.get(second).status_code == 400  # used
    # the old password is gone, the new one works
    client_id, _ = live.create_client()
    for password, ok in (("old-password-1", False), ("brand-new-password-7", True)):
        sign = Browser(live.issuer)
        resp = sign.sign_in(sign.get(authorize_url(live.issuer, client_id)), "reset@example.com", password)
        assert (resp.status_code == 302) is ok, password


def test_expired_and_foreign_links_are_refused(live):
    from idp.store import MailToken, db, utcnow

    live.create_user("expire@example.com", "old-password-1")
    _ask(live, "expire@example.com")
    link = link_in(live.mailbox.wait_for("expire@example.com")[-1], live.issuer)
    with live.db():
        for row in db.session.query(MailToken).filter_by(purpose="reset").all():
            row.expires_at = utcnow()
        db.session.commit()
    assert Browser(live.issuer).get(link).status_code == 400
    assert Browser(live.issuer).get(f"{live.issuer}/password/reset/made-up-token").status_code == 400


def test_reset_signs_out_every_session_and_product(live):
    live.create_user("everywhere@example.com", "old-password-1")
    client_id, secret = live.create_client()
    other = Browser(live.issuer)
    verifier, challenge = pkce()
    page = other.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256",
                                   scope="openid offline_access"))
    code = redirect_params(other.sign_in(page, "everywhere@example.com", "old-password-1"))["code"]
    tokens = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier}, auth=(client_id, secret)).json()
    _ask(live, "everywhere@example.com")
    link = link_in(live.mailbox.wait_for("everywhere@example.com")[-1], live.issuer)
    b = Browser(live.issuer)
    page = b.get(link)
    b.submit(page, {"password": "fresh-password-9", "sign_out_everywhere": "on"})
    # the other browser is signed out, the product's refresh token is dead
    assert redirect_params(other.get(authorize_url(live.issuer, client_id, prompt="none")))["error"] == "login_required"
    resp = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                 auth=(client_id, secret))
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(f"{live.issuer}/userinfo", headers=bearer, timeout=10).status_code == 401


def test_reset_mail_is_in_the_persons_language(live):
    live.create_user("francais-reset@example.com", "old-password-1")
    _ask(live, "francais-reset@example.com", lang="fr")
    msg = live.mailbox.wait_for("francais-reset@example.com")[-1]
    assert "mot de passe" in (str(msg["Subject"]) + body_of(msg)).lower()


def test_reset_requests_are_throttled_per_address(live):
    live.create_user("hammer@example.com", "old-password-1")
    answers = [_ask(live, "hammer@example.com").status_code for _ in range(5)]
    assert answers[:3] == [200, 200, 200] and answers[-1] == 429
    resp = _ask(live, "hammer@example.com")
    assert "Too many attempts" in resp.text and resp.headers["Retry-After"]


def test_reset_link_ignores_a_forged_host_header(live):
    live.create_user("poison@example.com", "old-password-1")
    b = Browser(live.issuer)
    b.http.headers["Host"] = "evil.example"  # an attacker's request, cookies and all
    page = b.get(f"{live.issuer}/password/forgot")
    b.submit(page, {"email": "poison@example.com"}, action=f"{live.issuer}/password/forgot")
    body = body_of(live.mailbox.wait_for("poison@example.com")[-1])
    assert "evil.example" not in body and f"{live.issuer}/password/reset/" in body
