"""Review of sessions and sign-out: each test names a hole found in review and proves it
shut, through the live server."""

from __future__ import annotations

from tests.conftest import Browser
from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, token, verify
from tests.test_backchannel import _deliver, _wait_rows, receiver  # noqa: F401 - the fixture
from tests.test_passkeys import _passkey_sign_in, _with_passkey


def _code_flow(live, browser, client_id, secret, email=None, password=None, **extra) -> dict:
    """One authorization (signing in through the pages when asked); the token response."""
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, code_challenge=challenge,
                                     code_challenge_method="S256", **extra))
    resp = page if page.is_redirect else browser.sign_in(page, email, password)
    code = redirect_params(resp)["code"]
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                               "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    return resp.json()


def _signed_in(live, browser, client_id) -> bool:
    return "code" in redirect_params(browser.get(authorize_url(live.issuer, client_id, prompt="none")))


def test_an_access_token_is_no_id_token_hint_for_logout(live, browser):
    """An access token (held by resource servers, not only by the product) signed by the
    same key is not an ID token: as an id_token_hint it must not end the person's session
    without their confirmation, nor earn a redirect."""
    live.create_user("review-logout-at@example.com", "logout-password")
    client_id, secret = live.create_client(post_logout_redirect_uris=["http://127.0.0.1:9/bye"])
    body = _code_flow(live, browser, client_id, secret, "review-logout-at@example.com", "logout-password")
    access_token = body["access_token"]
    assert verify(live.issuer, access_token)[0]["typ"] == "at+jwt"

    resp = browser.http.get(f"{live.issuer}/logout", params={"id_token_hint": access_token}, allow_redirects=False,
                            timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers
    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": access_token, "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert _signed_in(live, browser, client_id)

    # the real ID token still signs out at once and redirects
    resp = browser.http.get(f"{live.issuer}/logout", params={
        "id_token_hint": body["id_token"], "post_logout_redirect_uri": "http://127.0.0.1:9/bye"},
        allow_redirects=False, timeout=10)
    assert resp.status_code == 302 and resp.headers["Location"] == "http://127.0.0.1:9/bye"
    assert not _signed_in(live, browser, client_id)


def test_a_product_is_told_when_another_person_signs_in_on_the_browser(live, browser, receiver):  # noqa: F811
    """Someone else signing in on this browser ends the first person's session (no fixation):
    the products holding that session must be told, or they keep the first person signed in
    on a shared computer."""
    live.create_user("review-logout-first@example.com", "first-password")
    live.create_user("review-logout-second@example.com", "second-password")
    client_id, secret = live.create_client(backchannel_logout_uri=receiver.url)
    first = verify(live.issuer, _code_flow(live, browser, client_id, secret, "review-logout-first@example.com",
                                           "first-password")["id_token"])[1]
    resp = browser.sign_in(browser.get(f"{live.issuer}/signin"), "review-logout-second@example.com",
                           "second-password")
    assert resp.status_code == 200 and "review-logout-second@example.com" in resp.text

    _deliver(live)
    rows = _wait_rows(live, client_id, lambda rows: rows and all(r.delivered_at for r in rows))
    assert [verify(live.issuer, r.logout_token)[1]["sid"] for r in rows] == [first["sid"]]
    assert verify(live.issuer, rows[0].logout_token)[1]["sub"] == first["sub"]


def test_a_product_is_told_at_sign_out_after_the_same_person_signs_in_again(live, browser, receiver):  # noqa: F811
    """A second sign-in of the same person in the same browser (prompt=login from another
    product) keeps the session the first product holds (its `sid`), with a new secret. When
    the person then signs out, the first product gets a logout token for it: before, the
    re-sign-in made a new session and the first product kept the person signed in."""
    password = "replaced-password"
    live.create_user("review-logout-replaced@example.com", password)
    first, first_secret = live.create_client(backchannel_logout_uri=receiver.url)
    other, other_secret = live.create_client()
    first_claims = verify(live.issuer, _code_flow(live, browser, first, first_secret,
                                                  "review-logout-replaced@example.com", password)["id_token"])[1]
    other_claims = verify(live.issuer, _code_flow(live, browser, other, other_secret,
                                                  "review-logout-replaced@example.com", password,
                                                  prompt="login")["id_token"])[1]
    assert other_claims["sid"] == first_claims["sid"]  # the session went on

    page = browser.get(f"{live.issuer}/account")
    resp = browser.submit(page, {}, action="/signout")
    assert resp.status_code == 200
    assert not _signed_in(live, browser, other)

    _deliver(live)
    rows = _wait_rows(live, first, lambda rows: rows and all(r.delivered_at for r in rows))
    sids = {verify(live.issuer, r.logout_token)[1].get("sid") for r in rows}
    assert first_claims["sid"] in sids, sids


def test_sign_out_of_all_sessions_tells_the_products_of_replaced_sessions(live, browser, receiver):  # noqa: F811
    """"Sign out of all sessions" (and a disable or reset, the same function) ends the
    person everywhere: a product whose session a later sign-in in the same browser replaced
    still holds the person, and must be told too, not only the products of sessions still open."""
    password = "everywhere-password"
    live.create_user("review-logout-everywhere@example.com", password)
    first, first_secret = live.create_client(backchannel_logout_uri=receiver.url)
    other, other_secret = live.create_client()
    first_claims = verify(live.issuer, _code_flow(live, browser, first, first_secret,
                                                  "review-logout-everywhere@example.com", password)["id_token"])[1]
    _code_flow(live, browser, other, other_secret, "review-logout-everywhere@example.com", password,
               prompt="login")

    account = browser.get(f"{live.issuer}/account")
    done = browser.submit(account, {}, action=f"{live.issuer}/account/sessions/revoke-all")
    assert done.status_code == 200
    assert not _signed_in(live, browser, other)

    _deliver(live)
    rows = _wait_rows(live, first, lambda rows: rows and all(r.delivered_at for r in rows))
    claims = [verify(live.issuer, r.logout_token)[1] for r in rows]
    assert [c["sid"] for c in claims] == [first_claims["sid"]]
    assert claims[0]["sub"] == first_claims["sub"] and claims[0]["aud"] == first


def test_a_passkey_answer_needs_presence_verification_and_a_counter_that_moves_on(live):
    """Guard (passes): a passkey sign-in without the user-presence flag, without user
    verification, or with a sign counter that did not move on (a cloned authenticator) is
    refused, and a refused answer leaves the stored counter where it was."""
    _, device = _with_passkey(live, "review-logout-pk@example.com")
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)  # counter 1 → 2
    assert resp.status_code == 200, resp.text
    for tamper in ("up", "uv", "counter"):
        resp, _ = _passkey_sign_in(live, Browser(live.issuer), device, tamper=tamper)
        assert resp.status_code == 400, tamper
    resp, _ = _passkey_sign_in(live, Browser(live.issuer), device)
    assert resp.status_code == 200, resp.text
