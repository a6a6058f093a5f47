"""Review of the less common grants (device, token exchange, DPoP): each test names a
problem found, through the real server."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params, verify
from tests.test_dpop import Holder, _bound_token, _error
from tests.test_token_exchange import ACCESS_TOKEN, TOKEN_EXCHANGE, _exchange

PASSWORD = "review-grants-password"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


def _exchanging_client(live, audiences, **policy):
    from idp.clients import create_client

    with live.db():
        client, secret = create_client(
            {"client_name": "Bound Exchanger", "redirect_uris": [REDIRECT],
             "grant_types": ["authorization_code", "refresh_token", TOKEN_EXCHANGE]},
            first_party=True, policy={"token_exchange_audiences": list(audiences), **policy})
        return client.client_id, secret


def _code_for_exchanger(live, browser, email: str, **policy) -> tuple[str, str, str, str, str]:
    """(backend id, client id, secret, code, verifier): a person signed in at a client that
    may exchange tokens for the backend's audience, the code not yet redeemed."""
    live.create_user(email, PASSWORD)
    backend_id, _ = live.create_client(client_name="Backend", grant_types=["client_credentials"], redirect_uris=[])
    client_id, secret = _exchanging_client(live, [backend_id], **policy)
    verifier, challenge = pkce()
    page = browser.get(authorize_url(live.issuer, client_id, scope="openid email", code_challenge=challenge,
                                     code_challenge_method="S256"))
    code = redirect_params(browser.sign_in(page, email, PASSWORD))["code"]
    return backend_id, client_id, secret, code, verifier


def test_token_exchange_keeps_a_require_dpop_clients_tokens_bound(live, browser):
    """SPEC §1: a --require-dpop client gets DPoP-bound tokens only. Token exchange
    handed it a Bearer token without any proof, and never bound what it issued."""
    backend_id, client_id, secret, code, verifier = _code_for_exchanger(live, browser, "bound-exchange@example.com",
                                                                        require_dpop=True)
    holder = Holder()
    resp = _bound_token(live, holder, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                       "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP", resp.text
    subject = resp.json()["access_token"]

    # no proof: refused, as every other grant refuses this client
    resp = _exchange(live, client_id, secret, subject, audience=backend_id)
    assert _error(resp) == "invalid_dpop_proof"
    # with a proof: the exchanged token is bound to its key
    resp = _bound_token(live, holder, {"grant_type": TOKEN_EXCHANGE, "subject_token": subject,
                                       "subject_token_type": ACCESS_TOKEN, "audience": backend_id},
                        auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "DPoP"
    claims = verify(live.issuer, resp.json()["access_token"])[1]
    assert claims["cnf"] == {"jkt": holder.jkt} and claims["aud"] == backend_id


def test_token_exchange_binds_to_the_proof_sent(live, browser):
    """RFC 9449 §5: a token request with a proof gets a token bound to its key; token
    exchange checked the proof (and spent its jti) but issued a Bearer token."""
    backend_id, client_id, secret, code, verifier = _code_for_exchanger(live, browser, "proof-exchange@example.com")
    resp = requests.post(f"{live.issuer}/token", data={"grant_type": "authorization_code", "code": code,
                                                       "redirect_uri": REDIRECT, "code_verifier": verifier},
                         auth=(client_id, secret), timeout=30)
    subject = resp.json()["access_token"]
    holder = Holder()
    resp = _bound_token(live, holder, {"grant_type": TOKEN_EXCHANGE, "subject_token": subject,
                                       "subject_token_type": ACCESS_TOKEN, "audience": backend_id},
                        auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    assert resp.json()["token_type"] == "DPoP"
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": holder.jkt}


def test_a_bound_subject_token_is_exchanged_only_with_a_proof_of_its_key(live, browser):
    """RFC 9449 §7: a DPoP-bound access token is presented with a proof of its key. Token
    exchange took a bound subject token as a plain one and issued a Bearer token for it."""
    backend_id, client_id, secret, code, verifier = _code_for_exchanger(live, browser, "bound-subject@example.com")
    holder = Holder()
    resp = _bound_token(live, holder, {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                       "code_verifier": verifier}, auth=(client_id, secret))
    assert resp.json()["token_type"] == "DPoP", resp.text
    subject = resp.json()["access_token"]
    data = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": ACCESS_TOKEN,
            "audience": backend_id}
    assert _error(_exchange(live, client_id, secret, subject, audience=backend_id)) == "invalid_request"
    assert _error(_bound_token(live, Holder(), data, auth=(client_id, secret))) == "invalid_request"
    resp = _bound_token(live, holder, data, auth=(client_id, secret))
    assert resp.status_code == 200, resp.text
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": holder.jkt}


def test_device_user_codes_cannot_be_guessed_without_end(live, browser):
    """RFC 8628 §5.1: user codes of 20^8 values hold only with the verification throttled.
    /device took any number of wrong codes from one account, so a signed-in person could
    go through codes until they hit another's device (and connect it to their account)."""
    live.create_user("guesser@example.com", PASSWORD)
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE], redirect_uris=[])
    started = requests.post(live.meta["device_authorization_endpoint"], data={"client_id": client_id},
                            timeout=10).json()
    page = browser.sign_in(browser.get(f"{live.issuer}/device"), "guesser@example.com", PASSWORD)
    assert 'name="user_code"' in page.text
    wrong = "BBBB-BBBB" if started["user_code"] != "BBBB-BBBB" else "CCCC-CCCC"
    answers = [browser.submit(page, {"user_code": wrong}).status_code for _ in range(30)]
    assert answers[0] == 400 and 429 in answers, answers
    # throttled: even the right code waits, and the page says so (no 500)
    resp = browser.submit(page, {"user_code": started["user_code"]})
    assert resp.status_code == 429 and "Retry-After" in resp.headers and 'name="user_code"' in resp.text


def test_device_authorization_refuses_repeated_parameters_and_two_authentications(live):
    """RFC 6749 §3.1 and §2.3, as the token, revocation and introspection endpoints apply
    them: /device_authorization took a repeated scope (Authlib kept one) and a wrong
    client_secret beside good Basic credentials."""
    client_id, secret = live.create_client(grant_types=[DEVICE], redirect_uris=[])
    url = live.meta["device_authorization_endpoint"]
    resp = requests.post(url, data={"scope": ["openid", "email"]}, auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    resp = requests.post(url, data={"scope": "openid", "client_secret": "wrong"}, auth=(client_id, secret), timeout=10)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
    resp = requests.post(url, data={"scope": "openid"}, auth=(client_id, secret), timeout=10)
    assert resp.status_code == 200, resp.text
