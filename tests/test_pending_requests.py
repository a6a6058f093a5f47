"""Authorization requests in progress belong to the browser that started them, and consent
to the account that gave it (security review, finding 1); who is asking is shown plainly
(finding 10); RP-initiated logout is no open redirector (finding 10)."""

from __future__ import annotations

import re

import requests

from tests.conftest import Browser, csrf_of
from tests.oidc import authorize_url, redirect_params


def _req_of(page) -> str:
    """The pending request's id: in the URL of /signin?req=…, or in the form of the email
    page /authorize answers with itself."""
    return re.search(r"req=([0-9a-f]{32})", page.url + " " + page.text).group(1)


def _signed_in(live, email, password):
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, password)
    assert page.status_code == 200, page.text[:300]
    return b


def test_a_request_started_elsewhere_cannot_be_finished_by_a_signed_in_victim(live):
    """The attack of the finding: an attacker starts a request for their own client, consents
    with their own unverified account (which stops the flow before the request is deleted),
    then sends a signed-in victim to /authorize/resume/<id>. The victim's code must never
    reach the attacker's client."""
    from idp.passwords import hash_password
    from idp.store import User, db

    client_id, _ = live.create_client(first_party=False)
    with live.db():
        db.session.add(User(email="pending-attacker@example.com", email_verified=False,
                            password_hash=hash_password("attacker-password-1")))
        db.session.commit()
    live.create_user("pending-victim@example.com", "victim-password-1")
    victim = _signed_in(live, "pending-victim@example.com", "victim-password-1")

    attacker = Browser(live.issuer)
    page = attacker.get(authorize_url(live.issuer, client_id))
    req = _req_of(page)
    after = attacker.sign_in(page, "pending-attacker@example.com", "attacker-password-1")
    assert after.status_code == 403 and "Confirm your email address" in after.text  # no session
    consent = attacker.http.post(f"{live.issuer}/authorize/consent/{req}",
                                 data={"csrf_token": csrf_of(after.text), "decision": "allow"},
                                 allow_redirects=False, timeout=10)
    assert consent.status_code == 400 and "Location" not in consent.headers

    resumed = victim.http.get(f"{live.issuer}/authorize/resume/{req}", allow_redirects=False, timeout=10)
    assert resumed.status_code == 400 and "Location" not in resumed.headers
    assert "expired" in resumed.text
    page = victim.get(f"{live.issuer}/account")
    consent = victim.http.post(f"{live.issuer}/authorize/consent/{req}",
                               data={"csrf_token": csrf_of(page.text), "decision": "allow"},
                               allow_redirects=False, timeout=10)
    assert consent.status_code == 400 and "Location" not in consent.headers


def test_a_verified_stranger_cannot_resume_or_answer_another_browsers_request(live):
    client_id, _ = live.create_client(first_party=False)
    live.create_user("pending-owner@example.com", "owner-password-1")
    live.create_user("pending-other@example.com", "other-password-1")
    owner = Browser(live.issuer)
    page = owner.get(authorize_url(live.issuer, client_id, prompt="consent"))
    req = _req_of(page)
    consent_page = owner.sign_in(page, "pending-owner@example.com", "owner-password-1")
    assert "Allow" in consent_page.text  # the request waits on its consent screen

    other = _signed_in(live, "pending-other@example.com", "other-password-1")
    assert other.http.get(f"{live.issuer}/authorize/resume/{req}", allow_redirects=False,
                          timeout=10).status_code == 400
    # the owner's browser still finishes it
    assert "code" in redirect_params(owner.submit(consent_page, {"decision": "allow"}))


def test_a_pushed_request_belongs_to_the_first_browser_that_uses_it(live):
    client_id, secret = live.create_client(first_party=False)
    live.create_user("par-owner@example.com", "par-owner-password")
    pushed = requests.post(f"{live.issuer}/par", auth=(client_id, secret), timeout=10, data={
        "response_type": "code", "client_id": client_id, "redirect_uri": "http://127.0.0.1:9/cb",
        "scope": "openid", "state": "s", "nonce": "n"}).json()
    first = Browser(live.issuer)
    page = first.get(f"{live.issuer}/authorize", client_id=client_id, request_uri=pushed["request_uri"])
    req = _req_of(page)
    second = Browser(live.issuer)
    assert second.http.get(f"{live.issuer}/authorize/resume/{req}", allow_redirects=False,
                           timeout=10).status_code == 400
    again = second.http.get(f"{live.issuer}/authorize", params={"client_id": client_id,
                            "request_uri": pushed["request_uri"]}, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and "Location" not in again.headers


def test_consent_screen_names_the_host_and_flags_self_registered_apps(live):
    live.create_user("origin@example.com", "origin-password-1")
    token = live.idp("clients", "registration-token").stdout.strip()
    registered = requests.post(f"{live.issuer}/register", json={
        "client_name": "Google", "redirect_uris": ["http://127.0.0.1:9/cb"]},
        headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    b = _signed_in(live, "origin@example.com", "origin-password-1")
    page = b.get(authorize_url(live.issuer, registered["client_id"]))
    assert "Google wants to access your account" in page.text
    assert "127.0.0.1:9" in page.text and "not verified" in page.text
    operator_client, _ = live.create_client(first_party=False, client_name="Operator App")
    with live.db():
        from idp.store import Client, db

        db.session.get(Client, operator_client).verified = True  # as `idp clients create` makes it
        db.session.commit()
    page = b.get(authorize_url(live.issuer, operator_client))
    assert "Operator App wants to access your account" in page.text and "not verified" not in page.text


def test_logout_without_a_valid_hint_never_redirects(live):
    """With open registration anyone can register a client whose post-logout URI is their
    page: /logout?client_id=...&post_logout_redirect_uri=... must not bounce people there."""
    client_id, _ = live.create_client(post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    resp = requests.get(f"{live.issuer}/logout", params={
        "client_id": client_id, "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 200 and "Location" not in resp.headers
    live.create_user("bye@example.com", "bye-password-1")
    b = _signed_in(live, "bye@example.com", "bye-password-1")
    page = b.http.get(f"{live.issuer}/logout", params={
        "client_id": client_id, "post_logout_redirect_uri": "http://127.0.0.1:9/bye"}, timeout=10)
    done = b.submit(page, {"confirm": "yes"})
    assert done.status_code == 200 and "Location" not in done.headers
