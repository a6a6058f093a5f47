"""Security review of Enterprise Sign-In by SAML (review-saml7): each test drives the real
server (SQLite and PostgreSQL) with real responses signed by the pysaml2 IdP of
tests/saml_idp.py, and shows a problem found, or pins a defence checked sound."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.federation.test_saml_signatures import NS
from tests.oidc import redirect_params
from tests.saml_idp import TestIdP, decode, encode
from tests.test_review_saml import _response_in_response_to, _signed_in_as
from tests.test_saml import _fresh_request, _post, attached_org
from tests.test_saml_profile import _last_refusal, _re_signed, _user_exists


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "rev7")


def test_an_unsolicited_assertion_is_no_answer_to_a_request(live, idp, org):
    """(Checked sound: pysaml2's `check_subject_confirmation_in_response_to`.) In a browser
    that sent an AuthnRequest, the Response's InResponseTo is outside the signature when only
    the assertion is signed. An assertion the IdP issued unasked (its app portal's tile, or one
    leaked from a log), whose SubjectConfirmationData names no request, put by its holder in
    an envelope answering their own request, must not sign them in at an org that does not
    accept IdP-initiated sign-in (saml-profiles-2.0-os §4.1.4.2: the answer's bearer
    SubjectConfirmationData MUST carry the request's ID)."""
    _, domain = org
    victim = f"portal.{secrets.token_hex(3)}@{domain}"
    unasked, acs = idp.response({"issuer": f"{live.issuer}/saml/{_org_id(live, domain)}/metadata"},
                                email=victim, in_response_to=None, sign_response=False)
    assert "InResponseTo" not in decode(unasked)

    attacker, request = _fresh_request(live, idp, domain, "mallory")
    forged = _response_in_response_to(unasked, request["id"])
    page = _post(attacker, acs, forged, request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _signed_in_as(live, attacker) is None
    assert not _user_exists(live, victim)
    assert _last_refusal(live).startswith("pysaml2 refused the response: UnsolicitedResponse")


def _org_id(live, domain: str) -> str:
    from idp.store import OrgDomain, db

    with live.db():
        return db.session.query(OrgDomain).filter_by(domain=domain).one().org_id


def _confirmed_until(when: str):
    def change(assertion):
        assertion.find("saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData", NS) \
            .set("NotOnOrAfter", when)
    return change


def test_an_assertion_valid_until_the_end_of_time_is_a_sign_in_not_a_500(live, idp, org):
    """Low. An IdP may sign a bearer confirmation valid until the last instant xs:dateTime and
    pysaml2 accept ("9999-12-31T23:59:59Z": a "never expires" some IdPs are set up with).
    The replay marker is kept until that time plus the clock skew, a moment in year 10000
    that Python's datetime cannot hold: the ACS answered 500 (and an admin's Test connection
    too), where the assertion, correctly signed and for us, signs the person in (its id then
    spent for as long as a datetime can say)."""
    _, domain = org
    email = f"forever.{secrets.token_hex(3)}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    forever = _re_signed(good, idp, _confirmed_until("9999-12-31T23:59:59Z"))
    page = _post(b, acs, forever, request["relay_state"])
    assert page.status_code != 500, page.text[:300]
    assert redirect_params(page)["code"]
    assert _user_exists(live, email)


@pytest.mark.parametrize("attributes", [
    {"givenName": "G" * 150},
    {"givenName": "G" * 100, "sn": "F" * 100, "displayName": None},
], ids=["long-given-name", "given-and-family-names-joined"])
def test_long_names_from_the_idp_are_a_sign_in_not_a_500(live, idp, org, attributes):
    """Low. The IdP's givenName and sn were cut to 200 characters, where accounts keep 100 of
    each (and 200 of the name, which a given and a family name of 100 each, joined by a space
    when the IdP sends no displayName, exceed by one): on PostgreSQL, which holds a column to
    its length, the ACS answered 500 and the person could not sign in at all, a directory's
    long name (a name with its titles, or a concatenated field) being the IdP's to send. Cut
    to what the account keeps, as an OpenID provider's claims are (`federation.social.profile_text`)."""
    from idp.store import User, db

    _, domain = org
    email = f"long.{secrets.token_hex(3)}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    response, acs = idp.response(request, email=email, attributes=attributes)
    page = _post(b, acs, response, request["relay_state"])
    assert page.status_code != 500, page.text[:300]
    assert redirect_params(page)["code"]
    with live.db():
        user = db.session.query(User).filter_by(email=email).one()
        assert user.given_name == "G" * 100
        assert len(user.name) <= 200 and (user.name.startswith("G" * 100) or "displayName" not in attributes)


def _without_signature_value(b64: str) -> str:
    """The response with its signature's SignatureValue emptied: xs:base64Binary allows "",
    so the document is still valid SAML 2.0 and reaches the signature check."""
    xml = decode(b64)
    emptied = re.sub(r"(<(?:[\w.-]+:)?SignatureValue\b[^>]*>)[^<]*(</)", r"\1\2", xml, count=1)
    assert emptied != xml
    return encode(emptied)


def test_a_signature_without_a_value_is_a_refusal_not_a_500(live, idp, org):
    """Low. Anyone may post to the ACS: a response whose assertion's ds:SignatureValue is empty
    (valid against the schema) made signxml fail with a TypeError (base64 of None), which the
    signature check did not expect, and the ACS answered 500 instead of the refusal page and
    its audit event. No key, no valid response needed: one shaped like any IdP's will do."""
    _, domain = org
    email = f"nosig.{secrets.token_hex(3)}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    page = _post(b, acs, _without_signature_value(good), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == "signature has no SignatureValue"
    assert not _user_exists(live, email)


def test_a_refusal_reason_does_not_carry_the_senders_text_whole(live, idp, org):
    """Low. When only the assertion is signed, the Response's InResponseTo and Destination are
    the sender's to write, and pysaml2 names them in its refusal ("Unsolicited response:
    <InResponseTo>"), which went whole into the audit event (the org's audit log in the
    Admin Center) and the log line: anyone holding any response the org's IdP ever signed
    (expired ones too: InResponseTo is checked before the time) wrote some 250 KB of their
    choosing into both with each post. The reason is cut; the event still says what refused it."""
    from idp.store import SecurityEvent, db

    _, domain = org
    email = f"huge.{secrets.token_hex(3)}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    page = _post(b, acs, _response_in_response_to(good, "_" + "x" * 200_000), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    with live.db():
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        reason = event.detail["reason"]
    assert reason.startswith("pysaml2 refused the response: UnsolicitedResponse"), reason[:200]
    assert len(reason) <= 500, len(reason)


def test_a_response_in_lines_of_76_is_read(live, idp, org):
    """Low (interoperability): the POST binding's base64 is MIME's (saml-bindings §3.5.4 cites
    RFC 2045, whose lines are at most 76 characters), and some IdPs still send it so. The
    strict decoding refused any line break: "response is not base64", nobody signed in."""
    import textwrap

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "wrapped")
    response, acs = idp.response(request, email=f"wrapped@{domain}")
    wrapped = "\r\n".join(textwrap.wrap(response, 76))
    page = _post(b, acs, wrapped, request["relay_state"])
    assert "code" in redirect_params(page), (page.status_code, page.text[:300])  # back to the product, signed in
