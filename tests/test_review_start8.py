"""Review round 14: the stored authorization requests' budget per address, and `idp serve`'s start."""

from __future__ import annotations

from tests.oidc import authorize_url, redirect_params
from tests.test_review_authz7 import _http_from

PASSWORD = "start8-password"


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
