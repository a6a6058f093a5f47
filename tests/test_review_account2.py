"""Security review of the signed-in person's own account pages (branch review-account2):
each test shows one finding through the real server and its pages."""

from __future__ import annotations

import re

from tests.conftest import Browser
from tests.test_account import _sign_in


def test_a_new_password_that_is_the_email_name_is_refused(live):
    """Medium: a password equal to the address's name ("jeanne.dupont") is the first guess of
    anyone who knows the email (OWASP ASVS 2.1.7 / NIST SP 800-63B 5.1.1.2 context words)."""
    email = "jeanne.dupont@example.com"
    live.create_user(email, "first-password-1")
    b, _ = _sign_in(live, email, "first-password-1")
    page = b.get(f"{live.issuer}/account/password")
    for guess in ("jeanne.dupont", "Jeanne.Dupont"):
        resp = b.submit(page, {"current_password": "first-password-1", "password": guess})
        assert resp.status_code == 400 and 'role="alert"' in resp.text, guess
    fresh = Browser(live.issuer)
    resp = fresh.sign_in(fresh.get(f"{live.issuer}/account"), email, "jeanne.dupont")
    assert not resp.url.startswith(f"{live.issuer}/account"), "the email's name became the password"


def test_a_new_password_made_of_the_persons_name_is_refused(live):
    """Low: the address's name was a context word but the person's own name was not, so
    "jeannedupont" passed for Jeanne Dupont at sign-up, at a change and on the command line
    (NIST SP 800-63B 5.1.1.2 context-specific words)."""
    guesses = ("jeannedupont", "Jeanne Dupont", "dupont")
    b = Browser(live.issuer)
    for guess in guesses:
        page = b.get(f"{live.issuer}/signup")
        resp = b.submit(page, {"email": "jd-signup@example.com", "name": "Jeanne Dupont", "password": guess})
        assert resp.status_code == 400 and 'role="alert"' in resp.text, guess
    email = "jd-change@example.com"
    live.create_user(email, "first-password-1", name="Jeanne Dupont")
    b, _ = _sign_in(live, email, "first-password-1")
    page = b.get(f"{live.issuer}/account/password")
    for guess in guesses:
        resp = b.submit(page, {"current_password": "first-password-1", "password": guess})
        assert resp.status_code == 400 and 'role="alert"' in resp.text, guess
    done = live.idp("users", "create", "jd-cli@example.com", "--name", "Jeanne Dupont", "--password-stdin",
                    input="jeannedupont\n")
    assert done.returncode == 1 and done.stderr == "error: password refused: too common\n", done.stderr
    # A name is context, not a ban on its letters: a long password that only contains it passes.
    resp = b.submit(page, {"current_password": "first-password-1", "password": "jeanne dupont rides 7 blue trams"})
    assert resp.status_code == 200, resp.text[:300]


def test_a_password_change_is_told_to_the_account_owner_by_mail(live):
    """Medium: someone holding a signed-in browser and the password changes it, and the owner is
    never told, so never resets it back (OWASP ASVS 4.0 2.2.3 / 5.0 6.3.7: notify on credential change)."""
    from tests.smtp import body_of, link_in

    email = "told-of-change@example.com"
    live.create_user(email, "first-password-1")
    b, _ = _sign_in(live, email, "first-password-1")
    page = b.get(f"{live.issuer}/account/password")
    done = b.submit(page, {"current_password": "first-password-1", "password": "second-password-2"})
    assert done.status_code == 200 and done.url.startswith(f"{live.issuer}/account")
    mail = live.mailbox.wait_for(email)[-1]
    assert "password" in str(mail["Subject"]).lower()
    assert "second-password-2" not in body_of(mail)
    assert "/password" in link_in(mail, live.issuer)  # the way back for the owner: a reset


def test_a_revoked_session_takes_its_online_refresh_tokens_with_it(live):
    """Medium: "Revoke" on a session (a lost laptop) left the refresh token an app got in it,
    without offline_access, working (OpenID Connect Back-Channel Logout 1.0 section 2.7)."""
    from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

    email = "revoke-online@example.com"
    live.create_user(email, "first-password-1")
    client_id, secret = live.create_client()
    laptop = Browser(live.issuer)
    verifier, challenge = pkce()
    page = laptop.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                    code_challenge_method="S256", scope="openid profile"))
    code = redirect_params(laptop.sign_in(page, email, "first-password-1"))["code"]
    tokens = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                 "code_verifier": verifier}, auth=(client_id, secret)).json()
    assert "refresh_token" in tokens, tokens
    owner, account = _sign_in(live, email, "first-password-1")
    rows = re.findall(r"<li>(.*?)</li>", account.text, re.S)
    laptop_sid, = [re.search(r"/account/sessions/([0-9a-f]+)/revoke", row).group(1)
                   for row in rows if "/account/sessions/" in row and "this browser" not in row]
    owner.submit(account, {}, action=f"{live.issuer}/account/sessions/{laptop_sid}/revoke")
    assert laptop.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
    again = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
                  auth=(client_id, secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text


def test_a_session_ended_by_another_persons_sign_in_takes_its_online_refresh_tokens_with_it(live):
    """As finding 39 for a revoked session: a shared computer, where the next person signs in
    (prompt=login) and so ends the first one's session; the first one's app kept a refresh
    token without offline_access, which lived on (Back-Channel Logout 1.0 section 2.7)."""
    from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token

    first, second = "shared-first@example.com", "shared-second@example.com"
    live.create_user(first, "first-password-1")
    live.create_user(second, "second-password-2")
    client_id, secret = live.create_client()
    shared = Browser(live.issuer)
    tokens = []
    for who, password, extra in ((first, "first-password-1", {}), (second, "second-password-2", {"prompt": "login"})):
        verifier, challenge = pkce()
        page = shared.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                        code_challenge_method="S256", scope="openid profile", **extra))
        code = redirect_params(shared.sign_in(page, who, password))["code"]
        tokens.append(token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                          "code_verifier": verifier}, auth=(client_id, secret)).json())
    again = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens[0]["refresh_token"]},
                  auth=(client_id, secret))
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant", again.text
    mine = token(live.issuer, {"grant_type": "refresh_token", "refresh_token": tokens[1]["refresh_token"]},
                 auth=(client_id, secret))
    assert mine.status_code == 200, mine.text  # the session that signed in keeps its own


def test_a_cookie_copied_before_a_password_change_is_refused_after(live):
    """Medium: typing the current password is an authentication, yet the session secret a thief
    copied before it went on working after the owner changed the password (OWASP ASVS 4.0 3.2.1)."""
    email = "copied-cookie@example.com"
    live.create_user(email, "first-password-1")
    owner, _ = _sign_in(live, email, "first-password-1")
    thief = Browser(live.issuer)
    thief.http.cookies.update(owner.http.cookies)
    assert thief.get(f"{live.issuer}/account").url == f"{live.issuer}/account"
    page = owner.get(f"{live.issuer}/account/password")
    done = owner.submit(page, {"current_password": "first-password-1", "password": "second-password-2"})
    assert done.url == f"{live.issuer}/account" and "Your account" in done.text
    assert owner.get(f"{live.issuer}/account").url == f"{live.issuer}/account"
    assert thief.get(f"{live.issuer}/account").url.startswith(f"{live.issuer}/signin")
