"""Review round 13: the authorization endpoint and consent, as an attacker and an auditor."""

from __future__ import annotations

import requests

from tests.oidc import REDIRECT, authorize_url, redirect_params, token
from tests.test_review_authz5 import WIDE, _at_narrow_consent, _widen

PASSWORD = "authz7-password"


def test_consent_covers_the_scopes_the_screen_showed_not_those_registered_by_the_time_of_allow(live, browser):
    """Medium: the consent screen lists the request's scopes narrowed to the client's
    registration at the time it is shown; Allow narrowed them again to the registration at
    the time it is clicked, and the code carried those. A self-registered client asking for
    `openid email groups offline_access` while registered for `openid` only was shown as
    'Sign you in', widened its registration (RFC 7592) while the person read the screen, and
    the person's Allow gave it the email address, the groups and offline access, and
    remembered them as consented."""
    reg, manage, consent = _at_narrow_consent(live, browser, "authz7-widen@example.com")
    client_id = reg["client_id"]
    _widen(reg, manage)  # while the person reads the screen

    answer = browser.submit(consent, {"decision": "allow"})
    assert answer.status_code == 200 and 'name="decision"' in answer.text, "scopes never shown were granted"
    assert "See your email address" in answer.text and "Stay connected" in answer.text
    params = redirect_params(browser.submit(answer, {"decision": "allow"}))
    resp = token(live.issuer, {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": REDIRECT},
                 auth=(client_id, reg["client_secret"]))
    assert resp.status_code == 200, resp.text
    assert set(resp.json()["scope"].split()) == set(WIDE.split())


def test_a_request_objects_claims_member_is_read_as_its_query_form_not_refused(live, browser):
    """Low, OpenID Connect Core §5.5 and §6.1: in a request object `claims` is a JSON object
    (in the query, the same object as a JSON string). The query form was taken (and, as
    discovery says claims_parameter_supported false, not acted on), but the request object
    form was refused as invalid_request_object ("claims in the request object must be a
    string"): a product sending its request signed, as FAPI and many libraries do when they
    ask for an essential acr, could not sign anyone in."""
    from tests.test_request_objects import _authorize, _claims, _client, _key, _sign, _signed_in

    _signed_in(live, browser, "authz7-claims@example.com")
    key = _key()
    client_id, _ = _client(live, key)
    asked = {"id_token": {"acr": {"essential": True, "values": ["urn:myaccount:loa:1"]}}}
    resp = _authorize(browser, live, client_id=client_id, request=_sign(key, _claims(live, client_id, claims=asked)))
    params = redirect_params(resp)
    assert "code" in params and params["state"] == "inner-state", params
    # other members stay strings, as their query forms are
    resp = _authorize(browser, live, client_id=client_id, request=_sign(key, _claims(live, client_id, state=["x"])))
    assert redirect_params(resp)["error"] == "invalid_request_object"


def _http_from(address: str, http: requests.Session | None = None) -> requests.Session:
    """`http` (or a new session) connecting from `address`, one of the loopback's (127/8)."""
    from tests.test_enumeration_timing import SourceAddressAdapter

    http = http or requests.Session()
    http.mount("http://", SourceAddressAdapter(address))
    return http


def _kept_from(live, address: str) -> int:
    """The requests the database keeps for `address`."""
    from sqlalchemy import func, select

    from idp.ratelimit import client_network
    from idp.store import PendingAuthorization, db, digest

    with live.db():
        return db.session.execute(select(func.count()).select_from(PendingAuthorization).where(
            PendingAuthorization.address_key == digest(client_network(address)))).scalar_one()


def _flood(live, client_id: str, address: str, count: int, state: str = "s", threads: int = 1) -> set[int]:
    """`count` anonymous GETs of /authorize from `address`, each a new browser; their statuses."""
    from concurrent.futures import ThreadPoolExecutor

    url = authorize_url(live.issuer, client_id, state=state)

    def run(n: int) -> set[int]:
        http = _http_from(address)
        statuses = set()
        for _ in range(n):
            http.cookies.clear()  # a new browser each time: no session, a new pending request
            statuses.add(http.get(url, allow_redirects=False, timeout=30).status_code)
        return statuses

    with ThreadPoolExecutor(threads) as pool:
        return set().union(*pool.map(run, [count // threads + (i < count % threads) for i in range(threads)]))


def test_requests_from_one_address_that_find_no_session_are_not_kept_without_a_budget(live):
    """Medium (OWASP ASVS 11.1.4, anti-automation): anonymous GETs of /authorize from one
    address, each with a 30 kB state, were all kept for 30 minutes: one address could fill the
    database's disk. The product owner's answer is a budget per address, not a refusal (the
    test asked for a 429 before): past `pending.BUDGET` requests the address's oldest make
    room, so one address never keeps more than the budget, and nobody is refused."""
    from idp.pending import BUDGET

    client_id, _ = live.create_client()
    statuses = _flood(live, client_id, "127.0.0.3", BUDGET + 50, state="s" * 30_000)
    assert statuses == {200}, statuses
    assert _kept_from(live, "127.0.0.3") <= BUDGET


def test_requests_of_one_address_saved_at_once_stay_near_its_budget(live):
    """Requests of one address saved concurrently (two server processes, several clients)
    may each pass the budget's count at BUDGET - 1 (PostgreSQL's read committed), so the
    address keeps at most BUDGET + (its requests in flight at once - 1); evictions that race
    skip each other's rows rather than wait (no deadlock, no 500)."""
    from idp.pending import BUDGET

    client_id, _ = live.create_client()
    clients = 6
    statuses = _flood(live, client_id, "127.0.0.4", BUDGET + 60, threads=clients)
    assert statuses == {200}, statuses
    assert _kept_from(live, "127.0.0.4") <= BUDGET + clients - 1


def test_a_sign_in_from_another_address_survives_one_address_over_its_budget(live):
    """One address at its budget evicts only its own oldest requests: a sign-in in progress
    from another address (under its budget) completes, while the flooding address's first
    request is gone and its sign-in starts over from the application."""
    from tests.conftest import Browser
    from tests.test_pending_requests import _req_of

    from idp.pending import BUDGET, EVICTED

    client_id, _ = live.create_client()
    live.create_user("authz7-budget@example.com", PASSWORD)
    person = Browser(live.issuer)
    _http_from("127.0.0.5", person.http)
    started = person.get(authorize_url(live.issuer, client_id))
    flooder = Browser(live.issuer)
    _http_from("127.0.0.6", flooder.http)
    first = _req_of(flooder.get(authorize_url(live.issuer, client_id)))

    assert _flood(live, client_id, "127.0.0.6", BUDGET + EVICTED) == {200}
    assert _kept_from(live, "127.0.0.6") <= BUDGET
    gone = flooder.http.get(f"{live.issuer}/authorize/resume/{first}", allow_redirects=False, timeout=10)
    assert gone.status_code == 400 and "expired" in gone.text

    params = redirect_params(person.sign_in(started, "authz7-budget@example.com", PASSWORD))
    assert "code" in params, params
