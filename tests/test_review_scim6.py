"""Review of SCIM 2.0 provisioning, sixth round: each test names a behaviour that was wrong,
against the live server on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.test_scim import PASSWORD, Directory, _password_sign_in, scim_error, user_row


def test_a_person_at_a_domain_the_org_gave_up_can_still_be_deactivated(live):
    """Medium: an org admin may remove one of the org's domains ("people can no longer be
    added with them"); its people stay members. Every PATCH and PUT of such a person was then
    a 400, the deactivation Entra ID and Okta send when someone leaves (`active` false)
    included, so the leaver kept signing in. The domain rule is for an address being given
    (a create or a rename), not one the person already has (RFC 7644 §3.5.2, ASVS 2.5.x /
    8.3.x: offboarding must not fail on an unrelated attribute)."""
    from idp import domain_claims
    from idp.store import OrgDomain, db

    d = Directory(live, "rv6-gone-domain")
    old_domain = f"old-{d.domain}"
    with live.db():
        db.session.add(OrgDomain(domain=old_domain, org_id=d.org_id))
        db.session.commit()
    email = f"leaver@{old_domain}"
    uid = live.create_user(email, PASSWORD, org_id=d.org_id)
    with live.db():
        domain_claims.remove(db.session.get(OrgDomain, old_domain))

    resp = d.patch(f"/Users/{uid}", {"op": "replace", "path": "active", "value": False})
    assert resp.status_code == 200 and resp.json()["active"] is False, resp.text
    assert user_row(live, uid).disabled
    assert _password_sign_in(live, email).status_code == 401
    current = d.call("GET", f"/Users/{uid}").json()
    resp = d.call("PUT", f"/Users/{uid}", {**current, "title": "Former"})
    assert resp.status_code == 200 and resp.json()["title"] == "Former", resp.text
    # giving an address at the domain it gave up is still refused
    scim_error(d.call("POST", "/Users", {"userName": f"new@{old_domain}"}), 400, "invalidValue")
    other = d.create(d.email("stays"))
    scim_error(d.patch(f"/Users/{other['id']}", {"op": "replace", "path": "userName", "value": f"x@{old_domain}"}),
               400, "invalidValue")
