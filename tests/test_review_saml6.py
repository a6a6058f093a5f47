"""Security review of Enterprise Sign-In by SAML (review-saml6): each test drives the real
server (SQLite and PostgreSQL) with real responses signed by the pysaml2 IdP of
tests/saml_idp.py, and shows a problem found, or pins a defence checked sound."""

from __future__ import annotations

import uuid

import pytest

from tests.federation.test_saml_signatures import NS, SAML
from tests.oidc import redirect_params
from tests.saml_idp import TestIdP
from tests.test_saml import _fresh_request, _post, attached_org
from tests.test_saml_profile import _last_refusal, _re_signed, _user_exists
from tests.test_second_factor import set_up_app

KERBEROS = "urn:oasis:names:tc:SAML:2.0:nameid-format:kerberos"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "rev6")


@pytest.mark.parametrize("name_id_format, name_id", [
    (KERBEROS, "{local}@{DOMAIN}"),
    (PERSISTENT, "{local}@{domain}"),
], ids=["kerberos", "persistent"])
def test_a_name_id_that_is_no_address_does_not_pick_the_account(live, idp, org, name_id_format, name_id):
    """Medium. The address was the NameID whenever its text held an "@", whatever its Format:
    a Kerberos principal (sAMAccountName@REALM) or a persistent id is an identifier, not a
    mailbox (SAML core §8.3), and where it differs from the person's `email` attribute it named
    another person's account (a colleague whose address is jsmith@ while this person's
    principal is jsmith@REALM). Only a NameID of the emailAddress or unspecified format is
    read as the address; else the email attribute is."""
    _, domain = org
    tag = uuid.uuid4().hex[:6]
    person, other = f"jane.smith.{tag}@{domain}", f"js{tag}@{domain}"
    b, request = _fresh_request(live, idp, domain, person.partition("@")[0])
    response, acs = idp.response(
        request, email=person, name_id_format=name_id_format,
        name_id=name_id.format(local=f"js{tag}", domain=domain, DOMAIN=domain.upper()))
    page = _post(b, acs, response, request["relay_state"])
    assert redirect_params(page)["code"]
    assert _user_exists(live, person), "the person signs in as their own address"
    assert not _user_exists(live, other), "the NameID picked another person's account"


def test_an_email_name_id_still_picks_the_account(live, idp, org):
    """(Pins the rule above's other side.) A NameID of the unspecified format holding an
    address is still read before the attribute, as SPEC §5 says (Entra ID sends its UPN so)."""
    _, domain = org
    tag = uuid.uuid4().hex[:6]
    person = f"u{tag}@{domain}"
    b, request = _fresh_request(live, idp, domain, person.partition("@")[0])
    response, acs = idp.response(request, email=f"mail.{tag}@{domain}", name_id=person,
                                 name_id_format=UNSPECIFIED)
    assert redirect_params(_post(b, acs, response, request["relay_state"]))["code"]
    assert _user_exists(live, person)


def _audience_restriction_for(audience: str):
    """A second AudienceRestriction naming only `audience`, beside the IdP's (ours)."""
    def change(assertion):
        from lxml import etree

        ours = assertion.find("saml:Conditions/saml:AudienceRestriction", NS)
        other = etree.Element(f"{{{SAML}}}AudienceRestriction")
        etree.SubElement(other, f"{{{SAML}}}Audience").text = audience
        ours.addnext(other)
    return change


def test_every_audience_restriction_must_name_us(live, idp, org):
    """Low. SAML core §2.5.1.4: several AudienceRestriction conditions are a conjunction (each
    must be met), the audiences inside one a disjunction. pysaml2 (`for_me`) accepted an
    assertion when any one of them named us, so an assertion the IdP restricted to our SP AND
    another party (meant for neither on its own, as a proxy IdP narrows what it relays) signed
    a person in here."""
    _, domain = org
    email = f"aud.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    forged = _re_signed(good, idp, _audience_restriction_for("https://another-sp.example/saml"))
    page = _post(b, acs, forged, request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == "an AudienceRestriction does not name this service"
    assert not _user_exists(live, email)


def _session_ends_at(epoch: float):
    def change(assertion):
        from datetime import UTC, datetime

        statement = assertion.find("saml:AuthnStatement", NS)
        statement.set("SessionNotOnOrAfter", datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return change


def test_the_session_ends_when_the_idp_says_it_does(live, idp, org):
    """Low. An org's IdP that keeps its people's sessions short (SessionNotOnOrAfter an hour
    away: a shared-terminal policy, a contractor's limited day) was not heard: the session
    opened here lasted the full session lifetime (12 h), and the products' sign-ins rode on
    it. SAML core §2.7.2: the session MUST be considered ended then."""
    import time
    from datetime import UTC, datetime

    from idp.store import BrowserSession, User, db

    _, domain = org
    email = f"short.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    ends = time.time() + 3600
    assert redirect_params(_post(b, acs, _re_signed(good, idp, _session_ends_at(ends)), request["relay_state"]))["code"]
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        session = db.session.query(BrowserSession).filter_by(user_id=user.id).one()
        limit = datetime.fromtimestamp(ends, UTC).replace(tzinfo=None)
        assert session.expires_at <= limit, (session.expires_at, limit)


def _authn_instant_with_offset(assertion):
    statement = assertion.find("saml:AuthnStatement", NS)
    statement.set("AuthnInstant", statement.get("AuthnInstant").rstrip("Z").split(".")[0] + "+00:00")


def test_an_authn_instant_with_a_time_zone_offset_is_a_refusal_not_a_500(live, idp, org):
    """Low. xs:dateTime allows "+00:00" where SAML asks for "Z"; pysaml2's time parser
    (`str_to_time`) then fails with an AttributeError, which reading the AuthnInstant did not
    expect: the ACS answered 500 instead of the refusal page and its audit event."""
    _, domain = org
    email = f"tz.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    page = _post(b, acs, _re_signed(good, idp, _authn_instant_with_offset), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == "AuthnInstant is not a time"
    assert not _user_exists(live, email)


def test_the_session_ends_when_the_idp_says_it_does_after_a_second_factor_too(live, idp, org):
    """The same for a member who has an authenticator app here: the code step finishes the
    sign-in the IdP began, and keeps the end the IdP gave it."""
    import time
    from datetime import UTC, datetime


    from idp.store import BrowserSession, User, db
    from tests.conftest import csrf_of
    from tests.test_review_mfa6 import _next_code

    _, domain = org
    email = f"short2.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    assert redirect_params(_post(b, acs, good, request["relay_state"]))["code"]
    secret = set_up_app(live, b)

    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    ends = time.time() + 3600
    page = _post(b, acs, _re_signed(good, idp, _session_ends_at(ends)), request["relay_state"])
    assert "Confirm your identity" in page.text
    answer = b.http.post(page.url, data={"csrf_token": csrf_of(page.text), "code": _next_code(secret)},
                         allow_redirects=False, timeout=30)
    assert answer.status_code == 302, answer.status_code
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        newest = db.session.query(BrowserSession).filter_by(user_id=user.id) \
            .order_by(BrowserSession.created_at.desc()).first()
        assert newest.mfa_time is not None
        assert newest.expires_at <= datetime.fromtimestamp(ends, UTC).replace(tzinfo=None), newest.expires_at
