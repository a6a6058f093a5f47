"""Review round 11: the authorization endpoint and consent, as an attacker and an auditor."""

from __future__ import annotations

import re
import uuid

import pytest
import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify
from tests.test_social import provider  # noqa: F401 - the fixture (`idp social add upstream`)

PASSWORD = "authz5-password"


def _registered(live, **meta) -> tuple[dict, dict]:
    """A self-registered client (RFC 7591) and the header that manages it (RFC 7592)."""
    initial = live.idp("clients", "registration-token").stdout.strip()
    body = {"client_name": "Registered App", "redirect_uris": [REDIRECT], **meta}
    resp = requests.post(f"{live.issuer}/register", json=body, headers={"Authorization": f"Bearer {initial}"},
                         timeout=10)
    assert resp.status_code == 201, resp.text
    reg = resp.json()
    return reg, {"Authorization": f"Bearer {reg['registration_access_token']}"}


WIDE = "openid email groups offline_access"


def _at_narrow_consent(live, browser, email: str):
    """(registration, its management headers, the consent page) of a self-registered client
    registered for `openid` that asks `email` for WIDE: the screen says "Sign you in" only."""
    live.create_user(email, PASSWORD)
    reg, manage = _registered(live, scope="openid")
    consent = browser.sign_in(browser.get(authorize_url(live.issuer, reg["client_id"], scope=WIDE)), email, PASSWORD)
    assert 'name="decision"' in consent.text
    assert "Sign you in" in consent.text and "email address" not in consent.text
    return reg, manage, consent


def _widen(reg: dict, manage: dict) -> None:
    """The client widens its own registration to WIDE (RFC 7592)."""
    update = {k: v for k, v in reg.items() if k not in ("registration_access_token", "registration_client_uri",
                                                         "client_secret_expires_at", "client_id_issued_at")}
    update["scope"] = WIDE
    resp = requests.put(reg["registration_client_uri"], json=update, headers=manage, timeout=10)
    assert resp.status_code == 200, resp.text


def test_consent_covers_only_the_scopes_the_screen_showed(live, browser):
    """Medium: the consent screen lists the scopes the client may have (the request's,
    narrowed to its registration), but Allow remembered every scope the request named.
    A client registered for `openid` asked for `openid email groups offline_access`, was
    shown as 'Sign you in' only, then widened its own registration (RFC 7592) and got the
    person's email, groups and offline access on its next request with no consent screen."""
    reg, manage, consent = _at_narrow_consent(live, browser, "narrow-consent@example.com")
    client_id = reg["client_id"]
    assert "code" in redirect_params(browser.submit(consent, {"decision": "allow"}))

    _widen(reg, manage)

    page = browser.get(authorize_url(live.issuer, client_id, scope=WIDE))
    assert 'name="decision"' in page.text, "scopes never shown were taken as consented"
    assert "See your email address" in page.text


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """A social provider: another running instance of this product."""
    from tests.conftest import separate_live

    yield from separate_live(tmp_path_factory, "authz5-upstream")


@pytest.mark.parametrize("ask", [{"prompt": "login"}, {"max_age": "600"}])
@pytest.mark.usefixtures("provider")
def test_a_products_prompt_login_or_max_age_reaches_the_social_provider(live, upstream, ask):
    """Medium: a product asking for a fresh sign-in (prompt=login, or max_age shorter than the
    session's age: OIDC Core 3.1.2.1) got the sign-in page, but its social button sent the
    person to the provider without asking it to authenticate again, so the provider's own
    open session (hours old, a browser left signed in) answered at once; the request then
    counted as signed in now, and the ID token's auth_time said so. Whoever found such a
    browser passed the product's re-authentication (before a payment, say) with one click.
    An org's IdP has been asked for a fresh sign-in since test_review_admin5; the social
    button was not."""
    from tests.test_review_account5 import _age_sessions
    from tests.test_social import _link

    tag = uuid.uuid4().hex[:8]
    email, upstream_email = f"authz5-{tag}@example.com", f"authz5-{tag}@upstream.example"
    user_id = live.create_user(email, PASSWORD)
    upstream_id = upstream.create_user(upstream_email, "upstream-password")
    b, account = _link(live, upstream, email, PASSWORD, upstream_email)
    assert "Unlink" in account.text
    _age_sessions(live, user_id, 1200)
    _age_sessions(upstream, upstream_id, 1200)

    product, product_secret = live.create_client()
    page = b.get(authorize_url(live.issuer, product, **ask))
    assert 'name="email"' in page.text
    start = re.search(r'href="(/social/upstream/start\?req=[0-9a-f]+)"', page.text).group(1)
    asked = b.http.get(live.issuer + start, allow_redirects=False, timeout=30).headers["Location"]
    assert "prompt=login" in asked and "max_age=0" in asked, asked
    page = b.get(live.issuer + start)
    assert page.url.startswith(upstream.issuer) and 'name="email"' in page.text, \
        "the provider's open session answered a product's request for a fresh sign-in"
    params = redirect_params(b.sign_in(page, upstream_email, "upstream-password"))
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT},
                 auth=(product, product_secret))
    claims = verify(live.issuer, resp.json()["id_token"])[1]
    assert claims["sub"] == user_id and claims["amr"] == ["fed"]


def test_an_id_token_hint_is_not_answered_for_another_account_signing_in(live):
    """Low: id_token_hint names the account the product expects (OIDC Core 3.1.2.1: a positive
    answer only when that account is signed in or signs in for the request, otherwise an
    error such as login_required). Since test_review_par3 a browser where another account is
    signed in is sent to the sign-in page, but whoever then signed in there was answered: a
    product re-confirming Alice (before a payment, say) got a code for Bob, and one that
    trusts its hint, not the new ID token's sub, took Bob's sign-in as Alice's."""
    from tests.conftest import Browser
    from tests.test_review_par3 import PASSWORD as PAR3_PASSWORD
    from tests.test_review_par3 import _id_token

    client_id, secret = live.create_client()
    alice_hint = _id_token(live, Browser(live.issuer), client_id, secret, "authz5-hint-alice@example.com")
    live.create_user("authz5-hint-bob@example.com", PAR3_PASSWORD)
    _, challenge = pkce()
    ask = {"id_token_hint": alice_hint, "code_challenge": challenge, "code_challenge_method": "S256", "state": "st"}

    for signed_in in (False, True):  # a new browser, and one where Bob is signed in already
        bob = Browser(live.issuer)
        if signed_in:
            bob.sign_in(bob.get(f"{live.issuer}/account"), "authz5-hint-bob@example.com", PAR3_PASSWORD)
        page = bob.get(authorize_url(live.issuer, client_id, **ask))
        assert 'name="email"' in page.text
        params = redirect_params(bob.sign_in(page, "authz5-hint-bob@example.com", PAR3_PASSWORD))
        assert "code" not in params and params.get("error") == "login_required", params
        assert params["state"] == "st" and params["iss"] == live.issuer

    alice = Browser(live.issuer)
    page = alice.get(authorize_url(live.issuer, client_id, **ask))
    assert "code" in redirect_params(alice.sign_in(page, "authz5-hint-alice@example.com", PAR3_PASSWORD))


def test_a_native_apps_remembered_consent_is_not_used_for_a_request_anyone_could_send(live, browser):
    live.create_user("authz5-native@example.com", PASSWORD)
    client_id, _ = live.create_client(first_party=False, token_endpoint_auth_method="none",
                                      redirect_uris=["http://127.0.0.1/callback"])
    _, challenge = pkce()
    ask = {"code_challenge": challenge, "code_challenge_method": "S256"}
    app = "http://127.0.0.1:50123/callback"
    page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=app, **ask))
    consent = browser.sign_in(page, "authz5-native@example.com", PASSWORD)
    assert "code" in redirect_params(browser.submit(consent, {"decision": "allow"}), app)
    # another program on the same machine, its own port and PKCE, the app's client_id
    other = "http://127.0.0.1:50999/callback"
    _, its_challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=other, code_challenge=its_challenge,
                                     code_challenge_method="S256"))
    assert 'name="decision"' in page.text, "the remembered consent let another program have the code"


def _native_ask() -> dict:
    _, challenge = pkce()
    return {"code_challenge": challenge, "code_challenge_method": "S256", "state": "native"}


def test_a_native_apps_silent_request_after_consent_is_consent_required(live, browser):
    """RFC 8252 §8.6 with OIDC Core §3.1.2.6: prompt=none cannot be answered from a remembered
    consent for a public app on loopback or its own scheme; the consent is still recorded."""
    from idp.store import Consent, db

    live.create_user("authz5-silent@example.com", PASSWORD)
    scheme = "com.example.authz5:/cb"
    client_id, _ = live.create_client(first_party=False, token_endpoint_auth_method="none",
                                      redirect_uris=["http://127.0.0.1/callback", scheme])
    app = "http://127.0.0.1:50123/callback"
    page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=app, **_native_ask()))
    consent = browser.sign_in(page, "authz5-silent@example.com", PASSWORD)
    assert "code" in redirect_params(browser.submit(consent, {"decision": "allow"}), app)
    with live.db():
        row = db.session.execute(db.select(Consent).filter_by(client_id=client_id)).scalar_one()
        assert set(row.scope.split()) == {"openid", "profile", "email"}
    for uri in (app, "http://127.0.0.1:50999/callback", scheme):
        params = redirect_params(browser.get(authorize_url(live.issuer, client_id, redirect_uri=uri, prompt="none",
                                                           **_native_ask())), uri)
        assert params["error"] == "consent_required", uri
        assert params["state"] == "native" and params["iss"] == live.issuer
    # the screen, answered, gives the code (and is shown again next time)
    for _ in range(2):
        page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=scheme, **_native_ask()))
        assert 'name="decision"' in page.text
        assert "code" in redirect_params(browser.submit(page, {"decision": "allow"}), scheme)


def test_remembered_consent_still_answers_clients_whose_identity_is_assured(live, browser):
    """A public app on a claimed https redirect URI (RFC 8252 §7.2) and a confidential client
    (on loopback too) skip the screen after consent, prompt=none included."""
    live.create_user("authz5-assured@example.com", PASSWORD)
    claimed = "https://app.authz5.example/cb"
    public_id, _ = live.create_client(first_party=False, token_endpoint_auth_method="none", redirect_uris=[claimed])
    confidential_id, _ = live.create_client(first_party=False, redirect_uris=[REDIRECT])
    signed_in = False
    for client_id, uri in ((public_id, claimed), (confidential_id, REDIRECT)):
        page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=uri, **_native_ask()))
        if not signed_in:
            page, signed_in = browser.sign_in(page, "authz5-assured@example.com", PASSWORD), True
        assert 'name="decision"' in page.text
        assert "code" in redirect_params(browser.submit(page, {"decision": "allow"}), uri)
        for prompt in (None, "none"):
            resp = browser.get(authorize_url(live.issuer, client_id, redirect_uri=uri, prompt=prompt, **_native_ask()))
            assert "code" in redirect_params(resp, uri), (client_id, prompt)


def test_a_first_party_native_app_never_sees_the_consent_screen(live, browser):
    """First-party apps skip consent by design, native public ones on loopback and their own scheme included."""
    live.create_user("authz5-own-app@example.com", PASSWORD)
    scheme = "com.example.authz5own:/cb"
    client_id, _ = live.create_client(first_party=True, token_endpoint_auth_method="none",
                                      redirect_uris=["http://127.0.0.1/callback", scheme])
    app = "http://127.0.0.1:50123/callback"
    page = browser.get(authorize_url(live.issuer, client_id, redirect_uri=app, **_native_ask()))
    assert "code" in redirect_params(browser.sign_in(page, "authz5-own-app@example.com", PASSWORD), app)
    for uri in ("http://127.0.0.1:50999/callback", scheme):
        for prompt in (None, "none"):
            resp = browser.get(authorize_url(live.issuer, client_id, redirect_uri=uri, prompt=prompt, **_native_ask()))
            assert "code" in redirect_params(resp, uri), (uri, prompt)
