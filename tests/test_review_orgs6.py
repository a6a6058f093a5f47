"""Security review of orgs, domains and enterprise discovery, round 6 (review-orgs6): each test
drives the real server (SQLite and PostgreSQL) and showed a problem on the code before its fix."""

from __future__ import annotations

import uuid

import pytest

from tests.admin_world import get, new_org, person, signed_in
from tests.conftest import Browser
from tests.saml_idp import TestIdP
from tests.test_saml import _fresh_request, _post
from tests.test_scim import Directory
from tests.test_passkeys import _passkey_sign_in, _post_json
from tests.test_review_social5 import _set
from tests.webauthn_authenticator import SoftwareAuthenticator


def test_a_passkey_session_stops_counting_once_the_org_forbids_passkeys(live):
    """Medium (ASVS 3.3, as for social sign-in in review-social5): "Passkeys" off in the org's
    Sign-in options refused the next passkey sign-in, but a session opened with a passkey a
    minute before went on for its whole lifetime. It now stops counting; a session opened
    with the password goes on."""
    org_id, _, domain = new_org(live, "ro6-pk")
    email = f"m-{uuid.uuid4().hex[:8]}@{domain}"
    person(live, email, org_id)
    by_password = signed_in(live, email)
    account = by_password.get(f"{live.issuer}/account")
    device = SoftwareAuthenticator(live.issuer, allow_ip_origin=True)
    options = _post_json(by_password, account, "/account/passkeys/options").json()
    assert _post_json(by_password, account, "/account/passkeys",
                      {"credential": device.create(options)}).status_code == 201
    by_passkey = Browser(live.issuer)
    resp, _ = _passkey_sign_in(live, by_passkey, device)
    assert resp.status_code == 200, resp.text
    assert get(by_passkey, "/account").status_code == 200

    _set(live, org_id, allow_passkeys=False)
    resp = get(by_passkey, "/account")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/signin")
    assert get(by_password, "/account").status_code == 200


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


def test_a_person_an_orgs_idp_takes_over_brings_none_of_the_other_orgs_directory_data(live, saml_idp, tmp_path):
    """Low (ASVS 8.3.x, RFC 7643 §3.1 externalId is the provisioning client's): a member of org
    A whose domain passed to org B (A gave it up, B proved it) and who then signed in through B's
    IdP was moved into B with A's directory record: A's externalId and every attribute A's
    directory sent (employee number, manager, cost centre ...) were read by B's directory, and
    A's externalId blocked B's own. A person who leaves an org now leaves its record behind,
    as a SCIM DELETE leaves it."""
    from idp.store import OrgDomain, db

    a, b = Directory(live, "ro6-mv-a"), Directory(live, "ro6-mv-b")
    enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    mover = a.create(a.email("mover"), externalId="a-ext-secret-1",
                     schemas=["urn:ietf:params:scim:schemas:core:2.0:User", enterprise],
                     **{enterprise: {"employeeNumber": "A-EMP-4242", "costCenter": "A-project-x"}})
    with live.db():  # the domain changes hands (given up by A, proved by B)
        db.session.execute(OrgDomain.__table__.update().where(OrgDomain.domain == a.domain).values(org_id=b.org_id))
        db.session.commit()
    saml_idp.trust_sp(live.idp("orgs", "sp-metadata", b.name).stdout)
    path = tmp_path / "idp.xml"
    path.write_text(saml_idp.metadata_xml())
    assert live.idp("orgs", "saml", b.name, "--metadata", str(path)).returncode == 0

    local = mover["userName"].split("@")[0]
    browser, request = _fresh_request(live, saml_idp, a.domain, local)
    response, acs = saml_idp.response(request, email=mover["userName"])
    page = _post(browser, acs, response, request["relay_state"])
    assert page.status_code == 302 and "code=" in page.headers["Location"], page.text[:300]
    seen = b.call("GET", f"/Users/{mover['id']}")
    assert seen.status_code == 200, seen.text  # B's person now
    for leaked in ("a-ext-secret-1", "A-EMP-4242", "A-project-x"):
        assert leaked not in seen.text, seen.text
    # B's directory may give the person B's own externalId
    assert b.call("PUT", f"/Users/{mover['id']}", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                                   "userName": mover["userName"],
                                                   "externalId": "b-ext-1"}).status_code == 200
