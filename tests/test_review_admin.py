"""Security review of the Admin Center and SCIM (branch review-admin): each test shows one
finding through the live server, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid

import pytest


from tests.admin_world import get, new_org, org_admin, post, signed_in
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


# --- an org admin's rights do not follow them into another org ---------------------------

@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    from tests.conftest import separate_live

    yield from separate_live(tmp_path_factory, "upstream-review")


def test_an_admin_of_one_org_moved_by_another_orgs_idp_is_no_admin_there(live, upstream):
    """Someone made admin of org B (`idp orgs admin`) whose address is in org A's domain
    signs in through A's enterprise IdP: the sign-in makes them a member of A, and must not
    make them an admin of A, which A's admins never decided."""
    from tests.test_social import _browser, _upstream_sign_in

    a_id, a_name, a_domain = new_org(live, "rv-move-a")
    b_id, b_name, _ = new_org(live, "rv-move-b")
    out = live.idp("orgs", "oidc", a_name, "--issuer", upstream.issuer, "--client-id=placeholder",
                   "--client-secret=placeholder", "--json")
    assert out.returncode == 0, out.stderr
    client_id, secret = upstream.create_client(redirect_uris=[json.loads(out.stdout)["redirect_uri"]],
                                               first_party=True)
    out = live.idp("orgs", "oidc", a_name, "--issuer", upstream.issuer, f"--client-id={client_id}",
                   f"--client-secret={secret}")
    assert out.returncode == 0, out.stderr
    email = f"consultant-{uuid.uuid4().hex[:6]}@{a_domain}"
    user_id = org_admin(live, b_name, email)  # admin of B
    upstream.create_user(email, "upstream-password")

    b = _browser(live, upstream)
    page = _upstream_sign_in(b, b.submit(b.get(f"{live.issuer}/account"), {"email": email}), email,
                             "upstream-password")
    assert page.status_code == 200 and "Your account" in page.text, page.url

    from idp.store import SecurityEvent, User, db

    with live.db():
        row = db.session.get(User, user_id)
        assert row.org_id == a_id  # the enterprise sign-in made them A's, as before
        assert not row.org_admin
        # B's log says its admin is gone
        assert [(e.org_id, e.detail.get("moved_to")) for e in db.session.query(SecurityEvent).filter_by(
            user_id=user_id, kind="admin.removed")] == [(b_id, a_id)]
    assert get(b, f"/admin/orgs/{a_id}/users").status_code == 403
    assert get(b, f"/admin/orgs/{b_id}/users").status_code == 403
    assert "Admin Center" not in b.get(f"{live.issuer}/account").text


def test_a_group_shows_no_member_who_has_left_the_org(live):
    """A person of org A in one of A's groups is moved to org B (`idp orgs admin B`, or an
    enterprise sign-in at B's IdP once their domain is B's): A's directory no longer sees
    them, not even as a member of its groups (their name and address as they are now)."""
    a, b = Directory(live, "rv-grp-a"), Directory(live, "rv-grp-b")
    mover = a.create(displayName="Mover")
    stays = a.create(displayName="Stays")
    group = a.call("POST", "/Groups", {"displayName": "team", "members": [{"value": mover["id"]},
                                                                          {"value": stays["id"]}]}).json()
    out = live.idp("orgs", "admin", b.name, mover["userName"])
    assert out.returncode == 0, out.stderr
    scim_error(a.call("GET", f"/Users/{mover['id']}"), 404)
    for resp in (a.call("GET", f"/Groups/{group['id']}"), a.call("GET", "/Groups")):
        assert resp.status_code == 200
        assert mover["id"] not in resp.text and "Mover" not in resp.text, resp.text
        assert stays["id"] in resp.text
    found = a.call("GET", f'/Groups?filter=members eq "{mover["id"]}"').json()
    assert found["totalResults"] == 0
