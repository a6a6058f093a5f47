"""Security review of the Admin Center and SCIM (branch review-admin): each test shows one
finding through the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.admin_world import PASSWORD, get, new_org, org_admin, post, signed_in
from tests.test_scim import Directory, scim_error


# --- SCIM: input that reached the database or a conversion unchecked (500) -------------

def test_scim_numbers_dates_and_nul_characters_out_of_range_are_scim_errors(live):
    d = Directory(live, "rv-scim")
    user = d.create()
    for path in ('/Users?startIndex=99999999999999999999',  # beyond a 64-bit OFFSET
                 '/Users?filter=meta.created gt "9999-12-31T23:59:59-01:00"',  # past year 9999 in UTC
                 '/Users?filter=userName eq "a\\u0000b"',  # PostgreSQL text holds no NUL
                 '/Users?filter=displayName co "a\\u0000b"',
                 '/Groups?filter=members eq "a\\u0000b"'):
        scim_error(d.call("GET", path), 400, "invalidFilter" if "filter" in path else "invalidValue")
    scim_error(d.call("POST", "/Users/.search", '{"startIndex": 1e300}'), 400, "invalidValue")
    scim_error(d.call("POST", "/Users/.search", '{"startIndex": Infinity}'), 400, "invalidValue")
    scim_error(d.call("POST", "/Users/.search", {"attributes": [1, 2]}), 400, "invalidValue")
    for body in ({"userName": d.email(), "displayName": "a\u0000b"}, {"userName": d.email(), "externalId": "x\u0000"}):
        scim_error(d.call("POST", "/Users", body), 400, "invalidValue")
    scim_error(d.call("POST", "/Groups", {"displayName": "g\u0000"}), 400, "invalidValue")
    scim_error(d.patch(f"/Users/{user['id']}", {"op": "replace", "path": "displayName", "value": "x\u0000"}),
               400, "invalidValue")
    # what is fine still works
    assert d.call("GET", "/Users?startIndex=2").json()["Resources"] == []
    assert d.call("GET", '/Users?filter=meta.created gt "2000-01-01T00:00:00Z"').json()["totalResults"] == 1


# --- Admin Center: a NUL character in a URL or a form (PostgreSQL: 500) ------------------

def test_admin_center_answers_a_nul_character_with_a_readable_400(live):
    org_id, name, domain = new_org(live, "rv-nul")
    email = f"adm-{uuid.uuid4().hex[:6]}@{domain}"
    org_admin(live, name, email)
    b = signed_in(live, email)
    base = f"/admin/orgs/{org_id}"
    for path, params in ((f"{base}/users", {"q": "a\x00b"}), (f"{base}/users", {"after": "a\x00b"}),
                         (f"{base}/audit-log", {"person": "a\x00b"}), (f"{base}/users/ab\x00c", {})):
        resp = get(b, path, **params)
        assert resp.status_code == 400 and "Something went wrong" not in resp.text, (path, resp.status_code)
    for path, data in ((f"{base}/users", {"email": f"x-{uuid.uuid4().hex[:6]}@{domain}", "name": "a\x00b"}),
                       (f"{base}/domains/claims/a\x00/remove", {}), (f"{base}/domains/a\x00.com/remove", {})):
        resp = post(b, path, data)
        assert resp.status_code == 400 and "Something went wrong" not in resp.text, (path, resp.status_code)
    # nothing was added
    from idp.store import User, db

    with live.db():
        assert db.session.query(User).filter(User.org_id == org_id).count() == 1
