"""Security review of what an org's admins, directory and IdP can do (review-org4): each test
shows a problem found through the real server (SQLite and PostgreSQL)."""

from __future__ import annotations

import secrets

import pytest

from tests.saml_idp import TestIdP
from tests.test_saml import _fresh_request, _post, attached_org


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


def test_an_orgs_idp_cannot_sign_in_an_operator_at_its_domain(live, saml_idp, tmp_path):
    """An org's IdP is whatever its admins point it at (Admin Center, Enterprise Sign-In).
    An operator of the deployment whose address is at one of the org's domains must not be
    signed in by it, nor moved into the org: that would make any org admin an operator.
    SCIM already keeps its hands off operators (`scim.users.in_org`); just-in-time did not."""
    from idp.store import User, db

    _, domain = attached_org(live, saml_idp, tmp_path, "op")
    operator = f"ops.{secrets.token_hex(3)}@{domain}"
    operator_id = live.create_user(operator, is_admin=True)
    b, request = _fresh_request(live, saml_idp, domain, "mallory")
    response, acs = saml_idp.response(request, email=operator)
    page = _post(b, acs, response, request["relay_state"])
    assert page.status_code in (400, 403), (page.status_code, page.headers.get("Location"), page.text[:300])
    assert "Your account" not in b.get(f"{live.issuer}/account").text
    with live.db():
        user = db.session.get(User, operator_id)
        assert user.is_admin and user.org_id is None

