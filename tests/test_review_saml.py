"""Security review of Enterprise Sign-In by SAML (review-saml): each test shows a problem
found through the real server and the real pysaml2 IdP of tests/saml_idp.py."""

from __future__ import annotations

import re
import secrets

import pytest

from tests.conftest import Browser
from tests.oidc import redirect_params
from tests.saml_idp import TestIdP, decode, encode
from tests.test_saml import _fresh_request, _post, attached_org, idp_initiated


@pytest.fixture(scope="module")
def idp(tmp_path_factory):
    return TestIdP(tmp_path_factory.mktemp("saml-idp"))


@pytest.fixture
def org(live, idp, tmp_path):
    return attached_org(live, idp, tmp_path, "rev")

_SIGNATURE = re.compile(r"<(?:[\w.-]+:)?Signature\b[^>]*>.*?</(?:[\w.-]+:)?Signature>", re.S)
_ASSERTION = re.compile(r"<(?:[\w.-]+:)?Assertion\b")


def _response_in_response_to(b64: str, in_response_to: str | None) -> str:
    """The response with the Response's own (optional) signature removed and its unsigned
    InResponseTo set to `in_response_to` (or removed). The assertion and its signature,
    InResponseTo of its SubjectConfirmationData included, stay exactly as the IdP signed them."""
    xml = decode(b64)
    start = re.search(r"<(?:[\w.-]+:)?Response\b[^>]*>", xml)
    first_assertion = _ASSERTION.search(xml).start()
    head = _SIGNATURE.sub("", xml[start.end():first_assertion])
    tag = re.sub(r'\sInResponseTo="[^"]*"', "", start.group(0))
    if in_response_to is not None:
        tag = tag[:-1] + f' InResponseTo="{in_response_to}">'
    xml = xml[:start.start()] + tag + head + xml[first_assertion:]
    assert xml.count("Signature>") >= 1  # the assertion's signature is still there
    return encode(xml)


def _signed_in_as(live, b: Browser) -> str | None:
    page = b.get(f"{live.issuer}/account")
    if "Your account" not in page.text:
        return None
    return page.text


def test_an_assertion_answering_another_request_cannot_be_retargeted(live, idp, org):
    """(Checked sound: pysaml2 compares the assertion's InResponseTo with the Response's.)
    The assertion's signed SubjectConfirmationData InResponseTo binds it to the browser
    that asked for it. An attacker holding a victim's not yet used response (any leak before
    the victim's browser posts it) drops the Response's optional signature, points the
    unsigned Response InResponseTo at their own request, and must still be refused."""
    from idp.store import User, db

    _, domain = org
    victim = f"victim.{secrets.token_hex(3)}@{domain}"
    _victim_browser, victim_request = _fresh_request(live, idp, domain, victim.split("@")[0])
    stolen, acs = idp.response(victim_request, email=victim)

    attacker, attacker_request = _fresh_request(live, idp, domain, "mallory")
    forged = _response_in_response_to(stolen, attacker_request["id"])
    page = _post(attacker, acs, forged, attacker_request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, page.text[:300]
    assert _signed_in_as(live, attacker) is None
    with live.db():
        assert db.session.query(User).filter_by(email=victim).count() == 0


def test_an_answer_to_a_request_is_never_taken_as_unsolicited(live, idp, org, tmp_path):
    """An org accepting IdP-initiated sign-ins refuses, in a browser that sent no request, an
    assertion that answers a request (its signed InResponseTo says so), even when the
    unsigned Response InResponseTo has been removed."""
    from idp.store import SecurityEvent, User, db

    name, domain = org
    path = tmp_path / "idp.xml"
    path.write_text(idp.metadata_xml())
    assert live.idp("orgs", "saml", name, "--metadata", str(path), "--idp-initiated").returncode == 0
    victim = f"asked.{secrets.token_hex(3)}@{domain}"
    _victim_browser, request = _fresh_request(live, idp, domain, victim.split("@")[0])
    stolen, acs = idp.response(request, email=victim)

    stranger = Browser(live.issuer)
    page = _post(stranger, acs, _response_in_response_to(stolen, None), None)
    assert page.status_code == 400 and "could not be completed" in page.text, page.text[:300]
    assert _signed_in_as(live, stranger) is None
    with live.db():
        assert db.session.query(User).filter_by(email=victim).count() == 0
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        assert event.detail["reason"] == "InResponseTo names a request this browser did not send"


def test_a_spent_assertion_stays_spent_while_it_could_still_be_accepted(live, idp, org):
    """The spent-assertion marker (shared by every worker, deleted by housekeeping once it
    expires) must outlive every moment the SP would still accept the assertion: its
    NotOnOrAfter plus the clock skew allowed to the IdP. Expiring at NotOnOrAfter itself left
    a minute in which a housekeeping round deletes the marker and the same response signs in
    again."""
    from datetime import datetime, timedelta

    from federation.saml import CLOCK_SKEW
    from idp.store import Org, RevokedToken, db, digest

    name, domain = org
    b, request = _fresh_request(live, idp, domain, "spent")
    # a long-lived assertion (many IdPs give an hour): longer than the marker's 5-minute floor
    response, acs = idp.response(request, email=f"spent@{domain}", not_on_or_after_minutes=30)
    page = _post(b, acs, response, request["relay_state"])
    assert "code" in redirect_params(page)
    xml = decode(response)
    assertion = re.search(r"<(?:[\w.-]+:)?Assertion\b[^>]*\bID=\"([^\"]+)\"", xml).group(1)
    latest = max(datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")
                 for t in re.findall(r'NotOnOrAfter="([^"]+)"', xml))
    with live.db():
        org_id = db.session.query(Org).filter_by(name=name).one().id
        marker = db.session.get(RevokedToken, f"saml-assertion:{digest(f'{org_id}:{assertion}')}"[:64])
        assert marker is not None
        assert marker.expires_at >= latest + timedelta(seconds=CLOCK_SKEW), (marker.expires_at, latest)


def test_a_comment_in_the_email_attribute_cannot_shorten_the_address(live, idp, org):
    """(Checked sound.) The NameID is an opaque id, so the address comes from the email
    attribute: a comment put there after signing (exclusive c14n drops it, the signature
    still verifies) must not cut `dave@<domain><!---->.evil.example` to `dave@<domain>`."""
    from idp.store import SecurityEvent, User, db

    _, domain = org
    b, request = _fresh_request(live, idp, domain, "dave")
    real = f"dave@{domain}.evil.example"
    good, acs = idp.response(request, email=real, name_id="opaque-7f3a",
                             name_id_format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent")
    xml = decode(good)
    assert xml.count(f">{real}<") == 1
    cut = real.index(".evil.example")
    forged = encode(xml.replace(f">{real}<", f">{real[:cut]}<!---->{real[cut:]}<"))
    page = _post(b, acs, forged, request["relay_state"])
    assert page.status_code == 400 and "could not be completed" in page.text, page.text[:300]
    with live.db():
        assert db.session.query(User).filter_by(email=f"dave@{domain}").count() == 0
        event = (db.session.query(SecurityEvent).filter_by(kind="signin.failure")
                 .order_by(SecurityEvent.id.desc()).first())
        assert event.detail["reason"] == "email outside the org's domains"  # signature fine, address whole


def test_one_response_raced_through_both_workers_signs_in_once(live, idp, org, tmp_path):
    """(Checked sound.) The same IdP-initiated response parked six times and consumed at once
    by six browsers, over the server's two worker processes: one sign-in, five refusals."""
    from concurrent.futures import ThreadPoolExecutor

    name, domain = org
    acs, ours = idp_initiated(live, idp, name, tmp_path)
    response, _ = idp.response(ours, email=f"race@{domain}", acs_url=acs, in_response_to=None)
    browsers = [Browser(live.issuer) for _ in range(6)]
    parked = []
    for b in browsers:
        answer = b.http.post(acs, data={"SAMLResponse": response}, allow_redirects=False, timeout=30)
        assert answer.status_code == 303
        parked.append(answer.headers["Location"])

    def consume(pair):
        b, location = pair
        return b.follow(b.http.get(location if location.startswith("http") else live.issuer + location,
                                   allow_redirects=False, timeout=30)).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(consume, zip(browsers, parked, strict=True)))
    assert statuses == [200, 400, 400, 400, 400, 400], statuses
    assert sum(_signed_in_as(live, b) is not None for b in browsers) == 1
