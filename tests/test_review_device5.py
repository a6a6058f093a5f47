"""Review of the device authorization grant (RFC 8628) and token exchange (RFC 8693), fifth
round: no new flaw was found; these pin, through the real server, properties the round
checked that no other test held."""

from __future__ import annotations

import requests

from tests.oidc import token, verify
from tests.test_dpop import Holder, _bound_token
from tests.test_token_exchange import TOKEN_EXCHANGE, _client, _exchange, _person_token

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
PASSWORD = "exchange-password"  # test_token_exchange's helpers sign in with it


def test_a_require_dpop_device_client_gets_bound_tokens_only_and_a_refused_poll_keeps_the_approval(live, browser):
    """Regression (passes): SPEC §1 / RFC 9449 §5: a --require-dpop device client's poll without
    a proof is refused before the approval is claimed, so the device, once it sends a proof,
    still gets its (bound) tokens; the approval is spent by that one success only."""
    from idp.store import Client, db

    live.create_user("device5-dpop@example.com", PASSWORD)
    client_id, _ = live.create_client(token_endpoint_auth_method="none", grant_types=[DEVICE, "refresh_token"],
                                      redirect_uris=[])
    with live.db():
        db.session.get(Client, client_id).require_dpop = True
        db.session.commit()
    started = requests.post(live.meta["device_authorization_endpoint"],
                            data={"client_id": client_id, "scope": "openid email"}, timeout=10).json()
    page = browser.sign_in(browser.get(started["verification_uri_complete"]), "device5-dpop@example.com", PASSWORD)
    page = browser.submit(page, {"user_code": started["user_code"]})
    assert browser.submit(page, {"user_code": started["user_code"], "decision": "allow"}).status_code == 200
    poll = {"grant_type": DEVICE, "device_code": started["device_code"], "client_id": client_id}
    resp = token(live.issuer, poll)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_dpop_proof", resp.text
    holder = Holder()
    resp = _bound_token(live, holder, poll)
    assert resp.status_code == 200 and resp.json()["token_type"] == "DPoP", resp.text
    assert verify(live.issuer, resp.json()["access_token"])[1]["cnf"] == {"jkt": holder.jkt}
    resp = _bound_token(live, holder, poll)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text


def test_an_exchanged_token_is_for_its_audience_only(live, browser):
    """Regression (passes): RFC 8693 §2.1 / RFC 9068 §4: the exchanged token names another
    product as its audience, so this server's UserInfo refuses it, and that product, though
    registered for token exchange itself, cannot exchange it onward: it was not issued to it
    (a chain of actors only as the operator's policy for the client holding the token allows)."""
    live.create_user("device5-exchange@example.com", PASSWORD)
    third_id, _ = _client(live, client_name="Third API", grant_types=["client_credentials"], redirect_uris=[])
    backend_id, backend_secret = _client(live, audiences=[third_id], client_name="Calendar API",
                                         grant_types=["client_credentials", TOKEN_EXCHANGE], redirect_uris=[])
    client_id, secret = _client(live, audiences=[backend_id])
    tokens = _person_token(live, browser, client_id, secret, "device5-exchange@example.com")
    # the person's own token is good at UserInfo: the refusal below is the audience
    resp = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"},
                        timeout=10)
    assert resp.status_code == 200, resp.text
    got = _exchange(live, client_id, secret, tokens["access_token"], audience=backend_id)
    assert got.status_code == 200, got.text
    exchanged = got.json()["access_token"]
    resp = requests.get(f"{live.issuer}/userinfo", headers={"Authorization": f"Bearer {exchanged}"}, timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_token", resp.text
    resp = _exchange(live, backend_id, backend_secret, exchanged, audience=third_id)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request", resp.text
