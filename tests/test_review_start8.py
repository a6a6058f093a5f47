"""Review round 14: the stored authorization requests' budget per address, and `idp serve`'s start."""

from __future__ import annotations

from tests.oidc import REDIRECT, authorize_url, pkce, redirect_params
from tests.test_review_authz7 import _http_from

PASSWORD = "start8-password"


def _live_requests_of(live, client_id: str) -> int:
    """The requests the database keeps, not expired, for `client_id`."""
    from sqlalchemy import func, select

    from idp.store import PendingAuthorization, db, utcnow

    with live.db():
        return db.session.execute(select(func.count()).select_from(PendingAuthorization).where(
            PendingAuthorization.client_id == client_id, PendingAuthorization.expires_at > utcnow())).scalar_one()


def test_pushed_requests_a_browser_takes_count_in_its_addresses_budget(live):
    """Medium (OWASP ASVS 11.1.4; the budget of test_review_authz7): a pushed request (RFC 9126)
    a browser takes at /authorize becomes an ordinary pending request kept 30 minutes, but kept
    no address: an address at its budget pushed with a public client (no secret, up to a
    megabyte a request, 600 per 10 minutes) and took each request from a new browser, and
    every one stayed beside its budget's 1,000, none evicting anything. A taken request now
    counts for the address of the browser that took it, as one it sent to /authorize would."""
    from idp.pending import BUDGET

    _, challenge = pkce()
    client_id, _ = live.create_client(token_endpoint_auth_method="none")
    address = "127.0.0.91"
    http = _http_from(address)
    url = authorize_url(live.issuer, client_id, code_challenge=challenge, code_challenge_method="S256")
    for _ in range(BUDGET):
        http.cookies.clear()  # a new browser each time: a new pending request
        assert http.get(url, allow_redirects=False, timeout=10).status_code == 200
    assert _live_requests_of(live, client_id) == BUDGET

    pushed = 30
    for _ in range(pushed):
        http = _http_from(address)  # a new browser each time
        resp = http.post(f"{live.issuer}/par", timeout=10, data={
            "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "scope": "openid",
            "state": "p" * 1000, "code_challenge": challenge, "code_challenge_method": "S256"})
        assert resp.status_code == 201, resp.text
        url = f"{live.issuer}/authorize?client_id={client_id}&request_uri={resp.json()['request_uri']}"
        assert http.get(url, allow_redirects=False, timeout=10).status_code == 302
    assert _live_requests_of(live, client_id) <= BUDGET



def test_a_sign_in_in_progress_survives_another_started_from_its_address(live):
    """High (PostgreSQL): the budget's conditional insert read its row count as -1 there
    (SQLAlchemy keeps an INSERT's rowcount only when asked), took every save for one over the
    budget, and evicted the address's 10 oldest requests on each: a second sign-in started
    from one address (another tab, a colleague behind the office's NAT, anyone on the same
    public network sending one GET) ended the first, whose person came back to "expired"."""
    from tests.conftest import Browser

    live.create_user("start8-neighbour@example.com", PASSWORD)
    client_id, _ = live.create_client()
    person = Browser(live.issuer)
    _http_from("127.0.0.92", person.http)
    started = person.get(authorize_url(live.issuer, client_id))
    neighbour = _http_from("127.0.0.92")
    assert neighbour.get(authorize_url(live.issuer, client_id), allow_redirects=False, timeout=10).status_code == 200
    params = redirect_params(person.sign_in(started, "start8-neighbour@example.com", PASSWORD))
    assert "code" in params, params
