"""Passkeys against a software authenticator built in the tests (real P-256 keys and signatures)."""

from __future__ import annotations

import re

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify
from tests.webauthn_authenticator import SoftwareAuthenticator


def _csrf_meta(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def _post_json(b: Browser, page, path: str, body: dict | None = None):
    return b.http.post(f"{b.issuer}{path}", json=body or {}, headers={"X-CSRFToken": _csrf_meta(page.text)},
                       allow_redirects=False, timeout=10)


def _with_passkey(live, email, password="passkey-password"):
    """A signed-in browser whose account has one passkey, and the authenticator holding it."""
    live.create_user(email, password)
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, password)
    assert "Add a passkey" in page.text
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(b, page, "/account/passkeys/options").json()
    resp = _post_json(b, page, "/account/passkeys", {"credential": device.create(options)})
    assert resp.status_code == 201, resp.text
    return b, device


def _passkey_sign_in(live, b: Browser, device, req: str | None = None, **tamper):
    page = b.get(f"{live.issuer}/signin" + (f"?req={req}" if req else ""))
    options = _post_json(b, page, "/signin/passkey/options").json()
    assertion = device.get(options, **tamper)
    return _post_json(b, page, "/signin/passkey" + (f"?req={req}" if req else ""), {"credential": assertion}), \
        assertion


def test_register_and_sign_in_without_a_password(live):
    _, device = _with_passkey(live, "pk@example.com")
    client_id, secret = live.create_client()
    b = Browser(live.issuer)
    verifier, challenge = pkce()
    page = b.get(authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256"))
    req = re.search(r'action="/signin\?req=([0-9a-f]{32})"', page.text).group(1)  # /authorize's email page
    resp, _ = _passkey_sign_in(live, b, device, req)
    assert resp.status_code == 200, resp.text
    params = redirect_params(b.follow(b.http.get(live.issuer + resp.json()["redirect"], allow_redirects=False)))
    body = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret)).json()
    _, claims = verify(live.issuer, body["id_token"])
    assert set(claims["amr"]) == {"hwk", "mfa"} and claims["acr"] == "urn:myaccount:loa:2"
    assert claims["email"] == "pk@example.com"


def test_bad_and_replayed_assertions_are_refused(live):
    _, device = _with_passkey(live, "pk-bad@example.com")
    b = Browser(live.issuer)
    for tamper in ("signature", "origin", "challenge", "rp"):
        resp, _ = _passkey_sign_in(live, b, device, tamper=tamper)
        assert resp.status_code == 400, tamper
    resp, assertion = _passkey_sign_in(live, b, device)
    assert resp.status_code == 200
    # the same response again, with a fresh challenge in the cookie or with none: refused
    other = Browser(live.issuer)
    page = other.get(f"{live.issuer}/signin")
    _post_json(other, page, "/signin/passkey/options")
    assert _post_json(other, page, "/signin/passkey", {"credential": assertion}).status_code == 400
    assert _post_json(b, page, "/signin/passkey", {"credential": assertion}).status_code == 400
    # a passkey this site does not know
    stranger = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    stranger.create({**_post_json(*_account(live, "pk-stranger@example.com"), "/account/passkeys/options").json()})
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), stranger)
    assert resp.status_code == 400


def test_a_sign_in_without_a_user_handle_is_refused(live):
    """WebAuthn §7.2 step 6: a sign-in that named no account verifies that the authenticator
    said whose key it is (`userHandle`); a second factor, where the account is known, need not."""
    _, device = _with_passkey(live, "pk-nohandle@example.com")
    for handle in (None, ""):
        b = Browser(live.issuer)
        page = b.get(f"{live.issuer}/signin")
        assertion = device.get(_post_json(b, page, "/signin/passkey/options").json())
        if handle is None:
            del assertion["response"]["userHandle"]
        else:
            assertion["response"]["userHandle"] = handle
        resp = _post_json(b, page, "/signin/passkey", {"credential": assertion})
        # Otherwise a valid answer (the handle is not signed): before, it signed the person in.
        assert resp.status_code == 400 and resp.json()["error"] == "This passkey could not sign you in.", handle
        assert sessions_of(b) == []
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)
    assert resp.status_code == 200, resp.text


def sessions_of(b: Browser) -> list[str]:
    return [c.name for c in b.http.cookies if c.name.endswith("idp_session")]


def _account(live, email):
    live.create_user(email, "passkey-password")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "passkey-password")
    return b, page


def test_passkey_without_user_verification_cannot_sign_in_alone(live):
    live.create_user("pk-nouv@example.com", "passkey-password")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "pk-nouv@example.com", "passkey-password")
    device = SoftwareAuthenticator(live.issuer, user_verification=False, allow_ip_origin=True)
    options = _post_json(b, page, "/account/passkeys/options").json()
    assert _post_json(b, page, "/account/passkeys", {"credential": device.create(options)}).status_code == 201
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)
    assert resp.status_code == 400 and "password" in resp.json()["error"]


def test_passkey_as_second_factor(live):
    _, device = _with_passkey(live, "pk-2fa@example.com")
    _, other_device = _with_passkey(live, "pk-other@example.com")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), "pk-2fa@example.com", "passkey-password")
    assert "Confirm your identity" in page.text and "Use a passkey" in page.text
    # someone else's passkey does not confirm this person
    options = _post_json(b, page, "/signin/verify/passkey/options").json()
    assert options["allowCredentials"]
    # a hostile browser ignores the allow list and answers with the other account's passkey
    wrong = other_device.get({**options, "allowCredentials": []})
    assert _post_json(b, page, "/signin/verify/passkey", {"credential": wrong}).status_code == 400
    options = _post_json(b, page, "/signin/verify/passkey/options").json()
    resp = _post_json(b, page, "/signin/verify/passkey", {"credential": device.get(options)})
    assert resp.status_code == 200, resp.text
    assert "Your account" in b.get(live.issuer + resp.json()["redirect"]).text


def test_removed_passkey_no_longer_signs_in(live):
    b, device = _with_passkey(live, "pk-remove@example.com")
    page = b.get(f"{live.issuer}/account")
    passkey_id = re.search(r"/account/passkeys/([0-9a-f]{32})/remove", page.text).group(1)
    b.submit(page, {}, action=f"{live.issuer}/account/passkeys/{passkey_id}/remove")
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)
    assert resp.status_code == 400


def test_enforced_sso_binds_passkeys_of_accounts_in_the_domain_without_membership(live):
    """One rule by domain and membership (security review, finding 5): an account made before
    its domain joined an org cannot go around the org's enforced Enterprise Sign-In with a
    passkey."""
    import secrets

    name = "pkorg-" + secrets.token_hex(3)
    email = f"early@{name}.example"
    _, device = _with_passkey(live, email)
    assert live.idp("orgs", "create", name, "--domain", f"{name}.example").returncode == 0
    assert live.idp("orgs", "oidc", name, "--issuer", "https://login.pk.example", "--client-id=c",
                    "--client-secret=s").returncode == 0
    assert live.idp("orgs", "enforce-sso", name).returncode == 0
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)
    assert resp.status_code == 400 and "Enterprise Sign-In" in resp.json()["error"]


def test_a_failed_registration_does_not_spend_the_hours_changes(live):
    """A failed attempt is not a change: passkeys that fail verification (here, made for
    another origin) add nothing and mail nobody, so they give back their count of the hour's
    changes ("change:account"); past the budget's worth of them a passkey is still added."""
    from idp.ratelimit import POLICIES

    email = "pk-failed-budget@example.com"
    live.create_user(email, "passkey-password")
    b = Browser(live.issuer)
    page = b.sign_in(b.get(f"{live.issuer}/account"), email, "passkey-password")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    for _ in range(POLICIES["change:account"].free + 2):
        options = _post_json(b, page, "/account/passkeys/options").json()
        resp = _post_json(b, page, "/account/passkeys", {"credential": device.create(options, tamper="origin")})
        assert resp.status_code == 400, resp.text
    options = _post_json(b, page, "/account/passkeys/options").json()
    resp = _post_json(b, page, "/account/passkeys", {"credential": device.create(options)})
    assert resp.status_code == 201, resp.text


def test_removing_a_passkey_already_gone_does_not_spend_the_hours_changes(live):
    """Revoke of a passkey removed meanwhile (another tab, the mail's "Not you?" link)
    removes nothing and mails nobody: not counted against the hour's changes."""
    from idp.ratelimit import POLICIES

    b, _ = _with_passkey(live, "pk-gone-budget@example.com")
    account = b.get(f"{live.issuer}/account")
    passkey_id = re.search(r"/account/passkeys/([0-9a-f]{32})/remove", account.text).group(1)
    for _ in range(POLICIES["change:account"].free + 2):
        gone = b.submit(account, {}, action=f"{live.issuer}/account/passkeys/{'0' * 32}/remove")
        assert gone.status_code == 200
    done = b.submit(account, {}, action=f"{live.issuer}/account/passkeys/{passkey_id}/remove")
    assert done.status_code == 200 and f"/account/passkeys/{passkey_id}/remove" not in done.text
