"""Review of SCIM 2.0 provisioning (RFC 7643/7644) as an attacker and a standards auditor:
each test names a behaviour that was wrong, against the live server on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.test_scim import PASSWORD, PATCH_OP, Directory, _password_sign_in, scim_error, user_row


def test_a_deeply_nested_json_body_is_refused_with_a_scim_error(live):
    """Medium: a deeply nested body (1 MB of "[" or a few hundred levels) was a 500 from a
    RecursionError; now 400 (RFC 7644 §3.12, OWASP ASVS 5.1.4 / 13.1.x input limits)."""
    log_start = live.log_size()
    d = Directory(live, "rv-deep")
    user = d.create(d.email("deep"))
    scim_error(d.call("POST", "/Users", "[" * 100_000), 400, "invalidSyntax")
    deep_700 = "[" * 700 + "]" * 700
    scim_error(d.call("POST", "/Users", f'{{"userName": "{d.email()}", "x": {deep_700}}}'), 400, "invalidValue")
    deep_900 = "[" * 900 + "]" * 900
    body = f'{{"schemas": ["{PATCH_OP}"], "Operations": [{{"op": "add", "path": "x", "value": {deep_900}}}]}}'
    scim_error(d.call("PATCH", f"/Users/{user['id']}", body), 400, "invalidValue")
    scim_error(d.call("POST", "/Groups/.search", '{"filter": ' + "{" * 50_000), 400, "invalidSyntax")
    # a directory's real documents (an extension's manager is 3 levels down) still go through
    ok = d.patch(f"/Users/{user['id']}", {"op": "add", "value": {
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": {"value": "m-1"}}}})
    assert ok.status_code == 200, ok.text
    assert "Traceback" not in live.log_since(log_start) and "RecursionError" not in live.log_since(log_start)


def test_a_lone_surrogate_in_a_value_or_filter_is_refused_with_a_scim_error(live):
    """Medium: JSON's "\\ud800" (no UTF-8 text) in a body or filter was a 500 from the database
    driver on SQLite and PostgreSQL; now a 400 (RFC 7644 §3.12, OWASP ASVS 5.1.4)."""
    log_start = live.log_size()
    d = Directory(live, "rv-surrogate")
    user = d.create(d.email("s"))
    lone = "\\ud800"  # the six characters of a JSON escape
    for path in (f'/Users?filter=displayName eq "{lone}"', f'/Users?filter=userName eq "{lone}"',
                 f'/Groups?filter=displayName eq "{lone}"'):
        scim_error(d.call("GET", path), 400, "invalidFilter")
    for path, body in (
        ("/Users", f'{{"userName": "{d.email()}", "displayName": "{lone}"}}'),
        ("/Users", f'{{"userName": "{d.email()}", "externalId": "\\udfff"}}'),
        ("/Users", f'{{"userName": "{d.email()}", "{lone}": 1}}'),
        ("/Groups", f'{{"displayName": "{lone}"}}'),
        ("/Groups", f'{{"displayName": "g", "members": [{{"value": "{lone}"}}]}}'),
        ("/Users/.search", f'{{"filter": "externalId eq \\"{lone}\\""}}'),
    ):
        scim_error(d.call("POST", path, body), 400, "invalidValue")
    patch = f'{{"Operations": [{{"op": "replace", "path": "displayName", "value": "{lone}"}}]}}'
    scim_error(d.call("PATCH", f"/Users/{user['id']}", patch), 400, "invalidValue")
    # a proper pair (an emoji, "\\ud83d\\ude00") is text like any other
    ok = d.call("POST", "/Groups", '{"displayName": "team \\ud83d\\ude00"}')
    assert ok.status_code == 201 and ok.json()["displayName"] == "team \U0001f600"
    assert "Traceback" not in live.log_since(log_start)


def test_a_user_moved_to_another_org_shows_no_group_of_the_org_it_left(live):
    """Medium: a person moved from org A to org B (`idp orgs admin`, an enterprise sign-in) kept
    A's group ids and names in the `groups` B's token reads (RFC 7643 §4.1.2, ASVS 4.2.1 / 8.3.x)."""
    a, b = Directory(live, "rv-left-a"), Directory(live, "rv-left-b")
    mover = a.create(displayName="Mover")
    secret = a.call("POST", "/Groups", {"displayName": "A secret project", "members": [{"value": mover["id"]}]})
    assert secret.status_code == 201, secret.text
    out = live.idp("orgs", "admin", b.name, mover["userName"])
    assert out.returncode == 0, out.stderr
    theirs = b.call("POST", "/Groups", {"displayName": "B team", "members": [{"value": mover["id"]}]})
    assert theirs.status_code == 201, theirs.text
    for resp in (b.call("GET", f"/Users/{mover['id']}"), b.call("GET", "/Users"),
                 b.call("POST", "/Users/.search", {"filter": f'id eq "{mover["id"]}"'})):
        assert resp.status_code == 200, resp.text
        assert "A secret project" not in resp.text and secret.json()["id"] not in resp.text, resp.text
        assert "B team" in resp.text


def test_an_account_deleted_by_one_org_is_not_adopted_by_another_with_its_former_credentials(live):
    """Medium: org A deletes alice@d; domain d passes to org B, whose directory provisions
    alice@d: B's new person gets A's former person's account, whose password (passkeys,
    social links) still sign in (ASVS 2.5 / 3.3.x, the pre-hijack rule of idp/accounts.py)."""
    a, b = Directory(live, "rv-reuse-a"), Directory(live, "rv-reuse-b")
    email = a.email("alice")
    uid = live.create_user(email, PASSWORD, org_id=a.org_id)
    assert a.call("DELETE", f"/Users/{uid}").status_code == 204
    from idp.store import OrgDomain, db

    with live.db():  # the domain changes hands (given up by A, proved by B)
        db.session.execute(OrgDomain.__table__.update().where(OrgDomain.domain == a.domain)
                           .values(org_id=b.org_id))
        db.session.commit()
    adopted = b.create(email)
    assert user_row(live, adopted["id"]).org_id == b.org_id
    assert _password_sign_in(live, email).status_code == 401  # A's former person is not let in


def _hand_domain_over(live, a: Directory, b: Directory) -> None:
    from idp.store import OrgDomain, db

    with live.db():  # given up by A, proved by B
        db.session.execute(OrgDomain.__table__.update().where(OrgDomain.domain == a.domain)
                           .values(org_id=b.org_id))
        db.session.commit()


def test_another_orgs_adoption_wipes_all_the_former_person_held_and_mails_the_invitation(live):
    """Medium (the rule of `accounts.join_org`): org B adopting a row org A let go removes
    every link, factor, trusted device and session A's former person held, says so in B's
    audit log, and mails B's person the invitation (B has no IdP of its own), whose
    password then signs in."""
    from tests.smtp import body_of, link_in
    from tests.test_account_adoption import _plant, _what_is_left
    from tests.conftest import Browser

    a, b = Directory(live, "rv-wipe-a"), Directory(live, "rv-wipe-b")
    email = a.email("bo")
    uid = live.create_user(email, PASSWORD, org_id=a.org_id)
    assert a.call("DELETE", f"/Users/{uid}").status_code == 204
    assert user_row(live, uid).left_org_id == a.org_id
    _plant(live, email)  # all A's person held (a session that outlived the DELETE stands for any)
    _hand_domain_over(live, a, b)
    adopted = b.create(email)
    assert adopted["id"] == uid and adopted["active"] is True
    assert _what_is_left(live, uid) == {"verified": True, "password": False, "links": 0, "totp": 0, "devices": 0,
                                        "sessions": 0}
    row = user_row(live, uid)
    assert row.org_id == b.org_id and row.left_org_id is None
    from idp.store import SecurityEvent, db

    with live.db():
        adoption = db.session.query(SecurityEvent).filter_by(user_id=uid, kind="account.adopted").one()
        assert adoption.org_id == b.org_id and adoption.detail == {"kept_password": False, "adopted_by": b.org_id}
    mail = live.mailbox.wait_for(email)[0]
    assert b.name in body_of(mail)
    browser = Browser(live.issuer)
    done = browser.submit(browser.get(link_in(mail, live.issuer)), {"password": "b's own new pass 42"})
    assert done.status_code == 200
    page = browser.sign_in(browser.get(f"{live.issuer}/account"), email, "b's own new pass 42")
    assert "Your account" in page.text


def test_a_rehire_by_the_same_org_keeps_what_the_person_held_and_mails_nothing(live):
    """The other side of the rule: the org that let the person go provisions them again;
    their password, factors and links are theirs still, and no invitation is mailed."""
    import time

    from tests.test_account_adoption import _plant, _what_is_left

    a = Directory(live, "rv-rehire")
    email = a.email("back")
    uid = live.create_user(email, PASSWORD, org_id=a.org_id)
    _plant(live, email)
    assert a.call("DELETE", f"/Users/{uid}").status_code == 204
    assert a.create(email)["id"] == uid
    left = _what_is_left(live, uid)
    assert left["password"] and left["links"] == 1 and left["totp"] == 1
    assert user_row(live, uid).left_org_id is None
    time.sleep(1)
    assert live.mailbox.to(email) == []


def test_a_removal_by_a_value_list_of_objects_is_answered_not_a_500(live):
    """Low: `remove` with a `value` list whose values are objects or lists (unhashable) was a
    500; now they are compared as JSON (RFC 7644 §3.5.2.2 and §3.12: never a 500)."""
    log_start = live.log_size()
    d = Directory(live, "rv-unhashable")
    user = d.create(d.email("u"))
    group = d.call("POST", "/Groups", {"displayName": "g", "members": [{"value": user["id"]}]}).json()
    resp = d.patch(f"/Groups/{group['id']}", {"op": "remove", "path": "members", "value": [{"value": {"a": 1}}]})
    assert resp.status_code == 200 and resp.json()["members"][0]["value"] == user["id"], resp.text
    d.patch(f"/Users/{user['id']}", {"op": "add", "path": "roles", "value": [[1], {"value": {"k": 1}}, "r"]})
    for value in ([[1]], {"value": {"k": 1}}):
        resp = d.patch(f"/Users/{user['id']}", {"op": "remove", "path": "roles", "value": value})
        assert resp.status_code == 200, resp.text
    assert resp.json()["roles"] == ["r"]
    assert "Traceback" not in live.log_since(log_start)

def _patch_within(d: Directory, path: str, operations: list[dict], seconds: float):
    """One PATCH, sent compactly (the 1 MB limit), that must be answered within `seconds`."""
    import json

    import requests

    body = json.dumps({"schemas": [PATCH_OP], "Operations": operations}, separators=(",", ":"))
    assert len(body) < 1024 * 1024
    try:
        return requests.patch(d.base + path, data=body, headers=d.headers(), timeout=seconds)
    except requests.exceptions.Timeout:
        pytest.fail(f"a {len(body) // 1024} kB PATCH took more than {seconds} s")


def test_a_patch_adding_many_values_costs_linear_time(live):
    """Medium: an `add` to a multi-valued attribute checked each new value against every
    current one (65,000 x 65,000 comparisons: over 30 s of a worker's CPU for one request);
    now a set (RFC 7644 §3.5.2.1 add, ASVS 13.1.x / 11.1.4 resource limits)."""
    d = Directory(live, "rv-quadratic")
    user = d.create(d.email("q"))
    n = 65_000
    resp = _patch_within(d, f"/Users/{user['id']}", [
        {"op": "add", "path": "x509Certificates", "value": list(range(n))},
        {"op": "add", "path": "x509Certificates", "value": list(range(n - 10, 2 * n))},  # 10 already there
    ], 15)
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json()["x509Certificates"] == list(range(2 * n))


def test_a_patch_of_many_filtered_operations_is_refused_early(live):
    """Medium: each `members[value eq ...]` operation scans every value; 1,000 of them over
    40,000 members cost a minute of a worker's CPU; now a budget of values scanned per
    request, over it a 413 (RFC 7644 §3.5.2, ASVS 13.1.x / 11.1.4 resource limits)."""
    d = Directory(live, "rv-scan")
    user = d.create(d.email("m"))
    group = d.call("POST", "/Groups", {"displayName": "many", "members": [{"value": user["id"]}]}).json()
    operations = [{"op": "add", "path": "members", "value": [{"value": str(i)} for i in range(40_000)]}]
    operations += [{"op": "remove", "path": f'members[value eq "{i}"]'} for i in range(999)]
    resp = _patch_within(d, f"/Groups/{group['id']}", operations, 15)
    scim_error(resp, 413)
    # a directory's usual removal, by filter, still works
    ok = d.patch(f"/Groups/{group['id']}", {"op": "remove", "path": f'members[value eq "{user["id"]}"]'})
    assert ok.status_code == 200 and "members" not in ok.json(), ok.text
