"""The SAML 2.0 Web Browser SSO Profile (saml-profiles-2.0-os §4.1.4.2-3) held at the ACS:
each response is the test IdP's (pysaml2) with one thing its assertion must carry taken away,
signed again with the IdP's own key, so only that one thing is wrong. Driven through the real
server (SQLite and PostgreSQL): the person gets the usual refusal page and the audit event says why."""

from __future__ import annotations

import copy
import uuid

import pytest

from tests.federation.test_saml_signatures import NS, _assertion, _doc, _sign, _with_assertion
from tests.oidc import redirect_params
from tests.saml_idp import TestIdP
from tests.test_saml import _fresh_request, _post, attached_org

SENDER_VOUCHES = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "profile")


def _last_refusal(live) -> str:
    from idp.store import SecurityEvent, db

    with live.db():
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        return event.detail["reason"] if event is not None else ""


def _user_exists(live, email: str) -> bool:
    from idp.store import User, db

    with live.db():
        return db.session.query(User).filter_by(email=email).count() > 0


def _re_signed(b64: str, idp: TestIdP, change) -> str:
    """The IdP's response (only its assertion signed) with `change(assertion)` made to the
    assertion, which the IdP's key then signs again: a correctly signed response."""
    root = _doc(b64)
    assertion = copy.deepcopy(_assertion(root))
    change(assertion)
    return _with_assertion(root, _sign(assertion, idp))


def _confirmation(assertion):
    return assertion.find("saml:Subject/saml:SubjectConfirmation", NS)


def _no_audience_restriction(assertion):
    conditions = assertion.find("saml:Conditions", NS)
    for restriction in conditions.findall("saml:AudienceRestriction", NS):
        conditions.remove(restriction)
    assert conditions.get("NotOnOrAfter")  # the Conditions stay, times and all


def _no_conditions(assertion):
    assertion.remove(assertion.find("saml:Conditions", NS))


def _sender_vouches(assertion):
    _confirmation(assertion).set("Method", SENDER_VOUCHES)


def _sender_vouches_beside_the_bearer(assertion):
    bearer = _confirmation(assertion)
    other = copy.deepcopy(bearer)
    other.set("Method", SENDER_VOUCHES)
    bearer.addnext(other)


def _bearer_without_data_beside_sender_vouches(assertion):
    _sender_vouches_beside_the_bearer(assertion)
    bearer = _confirmation(assertion)
    bearer.remove(bearer.find("saml:SubjectConfirmationData", NS))


def _bearer_data_without(name: str):
    def change(assertion):
        data = _confirmation(assertion).find("saml:SubjectConfirmationData", NS)
        del data.attrib[name]
    return change


def _unchanged(assertion):
    pass


@pytest.mark.parametrize("change, reason", [
    (_no_audience_restriction, "assertion has no AudienceRestriction"),
    (_no_conditions, "assertion has no AudienceRestriction"),
    (_sender_vouches, "SubjectConfirmation method is not bearer"),
    (_sender_vouches_beside_the_bearer, "SubjectConfirmation method is not bearer"),
    (_bearer_without_data_beside_sender_vouches, "bearer SubjectConfirmationData has no Recipient"),
    (_bearer_data_without("NotOnOrAfter"), "bearer SubjectConfirmationData has no NotOnOrAfter"),
], ids=["no-audience-restriction", "no-conditions", "sender-vouches", "sender-vouches-beside-bearer",
        "dataless-bearer-beside-sender-vouches", "bearer-without-not-on-or-after"])
def test_an_assertion_outside_the_web_sso_profile_is_refused(live, idp, org, change, reason):
    """High. pysaml2 accepted each: no AudienceRestriction (an assertion for any SP of the
    IdP), a subject confirmed by sender-vouches (nothing checked), and a bearer confirmation
    with no NotOnOrAfter (its delivery window open for as long as the Conditions allow)."""
    _, domain = org
    email = f"p.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    good, acs = idp.response(request, email=email, sign_response=False)
    page = _post(b, acs, _re_signed(good, idp, change), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == reason
    assert not _user_exists(live, email)


def test_a_bearer_confirmation_without_recipient_is_refused(live, idp, org):
    """(Checked sound: pysaml2 refused it already, "No valid recipient".) The profile's other
    MUST of a bearer SubjectConfirmationData, now refused with the rule beside it."""
    _, domain = org
    b, request = _fresh_request(live, idp, domain, "norecipient")
    good, acs = idp.response(request, email=f"norecipient@{domain}", sign_response=False)
    page = _post(b, acs, _re_signed(good, idp, _bearer_data_without("Recipient")), request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, (page.status_code, page.text[:300])
    assert _last_refusal(live) == "bearer SubjectConfirmationData has no Recipient"


@pytest.mark.parametrize("sign_response", [True, False], ids=["response-signed", "assertion-signed"])
def test_the_idps_own_response_and_the_same_signed_again_sign_in(live, idp, org, sign_response):
    """What the IdP sends (bearer, Recipient, NotOnOrAfter, our Audience) signs in, as it did;
    so does the same assertion signed again unchanged, as the refusals above are."""
    _, domain = org
    email = f"ok.{uuid.uuid4().hex[:6]}@{domain}"
    b, request = _fresh_request(live, idp, domain, email.partition("@")[0])
    response, acs = idp.response(request, email=email, sign_response=sign_response)
    if not sign_response:
        response = _re_signed(response, idp, _unchanged)
    assert redirect_params(_post(b, acs, response, request["relay_state"]))["code"]
    assert _user_exists(live, email)

