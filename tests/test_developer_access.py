"""Who may open what under /developer, route by route, built from Flask's url_map: a route
missing from ROUTES fails the suite. Anonymous → sign in; another person → 404 and none of
the owner's data; the owner → the page works."""

from __future__ import annotations

import re

import pytest

from tests.conftest import Browser, csrf_of
from tests.oidc import REDIRECT

APP_NAME = "Private App Of The Owner"

# (rule, method): (form data, the owner's status). Forms never carry `confirm=yes`, so
# Rotate secret and Delete answer with their confirmation page and change nothing.
ROUTES = {
    ("/developer", "GET"): (None, 200),
    ("/developer/apps/new", "GET"): (None, 200),
    ("/developer/apps/new", "POST"): ({"name": "Another", "kind": "web", "redirect_uris": REDIRECT}, 200),
    ("/developer/apps/<client_id>", "GET"): (None, 200),
    ("/developer/apps/<client_id>", "POST"): ({"name": APP_NAME, "redirect_uris": REDIRECT}, 303),
    ("/developer/apps/<client_id>/rotate-secret", "GET"): (None, 200),
    ("/developer/apps/<client_id>/rotate-secret", "POST"): ({}, 200),
    ("/developer/apps/<client_id>/delete", "GET"): (None, 200),
    ("/developer/apps/<client_id>/delete", "POST"): ({}, 200),
}


def test_every_developer_route_is_in_the_table(live):
    found = {(rule.rule, method) for rule in live.app.url_map.iter_rules() if rule.rule.startswith("/developer")
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert found == set(ROUTES)


def _signed_in(live, email: str) -> Browser:
    live.create_user(email, "access-password")
    b = Browser(live.issuer)
    b.sign_in(b.get(f"{live.issuer}/signin"), email, "access-password")
    return b


@pytest.fixture(scope="module")
def world(live):
    """An owner with one app, another person, and a browser nobody signed in to."""
    owner = _signed_in(live, "access-owner@example.com")
    page = owner.get(f"{live.issuer}/developer/apps/new")
    created = owner.submit(page, {"name": APP_NAME, "kind": "web", "redirect_uris": REDIRECT})
    client_id = re.search(r'data-client-id="([^"]+)"', created.text).group(1)
    other = _signed_in(live, "access-other@example.com")
    anonymous = Browser(live.issuer)
    anonymous.get(f"{live.issuer}/signin")  # a session, so its CSRF token is a valid one
    return {"owner": owner, "other": other, "anonymous": anonymous, "client_id": client_id}


def _call(live, world, who: str, rule: str, method: str):
    """`who` tries the route; a POST carries a valid CSRF token of that browser's own session."""
    b = world[who]
    url = live.issuer + rule.replace("<client_id>", world["client_id"])
    if method == "GET":
        return b.http.get(url, allow_redirects=False, timeout=30)
    form_page = f"{live.issuer}/signin" if who == "anonymous" else f"{live.issuer}/developer/apps/new"
    token = csrf_of(b.http.get(form_page, timeout=30).text)
    data = ROUTES[(rule, method)][0]
    return b.http.post(url, data={"csrf_token": token, **(data or {})}, allow_redirects=False, timeout=30)


@pytest.mark.parametrize("rule, method", sorted(ROUTES))
def test_anonymous_is_sent_to_sign_in(live, world, rule, method):
    resp = _call(live, world, "anonymous", rule, method)
    assert resp.status_code in (302, 303) and resp.headers["Location"].endswith("/signin"), resp.status_code
    assert world["client_id"] not in resp.text and APP_NAME not in resp.text


@pytest.mark.parametrize("rule, method", sorted(ROUTES))
def test_another_person_sees_nothing_of_the_owner(live, world, rule, method):
    resp = _call(live, world, "other", rule, method)
    if "<client_id>" in rule:
        assert resp.status_code == 404
    else:
        assert resp.status_code == ROUTES[(rule, method)][1]
    assert world["client_id"] not in resp.text and APP_NAME not in resp.text


@pytest.mark.parametrize("rule, method", sorted(ROUTES))
def test_the_owner_gets_the_page(live, world, rule, method):
    status = ROUTES[(rule, method)][1]
    resp = _call(live, world, "owner", rule, method)
    assert resp.status_code == status, resp.text[:300]
    if "<client_id>" in rule and status == 200:
        assert APP_NAME in resp.text
